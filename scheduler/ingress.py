"""Validation of ingress messages (docs/contracts.md): pure, never raises on bad input.

A Celery message becomes either a Submission, a SessionRequest or a Rejection with
a reason a person can act on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from corral.base.keys import ADMIN_TASK, SESSION_TASK, SUBMIT_TASK
from corral.base.retry import DEFAULT, RetryPolicy

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")
SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Submission:
    task_id: str
    algorithm: str
    args: Any
    session: str = "default"
    gpus: int = 1
    retry: dict[str, Any] = field(default_factory=DEFAULT.to_dict)
    after: dict[str, str] | None = None  # input name -> upstream task id


@dataclass(frozen=True)
class SessionRequest:
    name: str
    action: str  # open | close
    fixed_workers: int = 0
    share_ratio: float = 1.0
    max_workers: int | None = None
    priority: int = 0
    algorithms: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdminRequest:
    action: str  # gpu.quarantine | gpu.release | node.drain | node.undrain
    node: str
    gpu: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Rejection:
    task_id: str | None
    reason: str
    algorithm: str | None = None
    session: str | None = None


Parsed = Submission | SessionRequest | AdminRequest | Rejection
ADMIN_ACTIONS = ("gpu.quarantine", "gpu.release", "node.drain", "node.undrain")
MAX_BATCH = 10_000  # tasks in one `corral.submit` message of the batch form
MAX_UPSTREAM = 64  # upstream tasks one task may wait for
INPUT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def parse_all(
    headers: dict[str, Any] | None,
    body: Any,
    *,
    known_algorithms: set[str] | frozenset[str],
    inline_limit: int,
) -> list[Parsed]:
    """Like parse(), for a message that may carry many tasks: kwargs {"tasks": [kwargs, ...]}.

    Each element is judged on its own, so one bad element is rejected alone; an element
    without a task_id gets `<message id>-<index>`.
    """
    headers = headers or {}
    name, message_id, kwargs = _unwrap(headers, body)
    if name != SUBMIT_TASK or not isinstance(kwargs, dict) or "tasks" not in kwargs:
        return [parse(headers, body, known_algorithms=known_algorithms, inline_limit=inline_limit)]
    items = kwargs["tasks"]
    if not isinstance(items, list) or not items:
        return [Rejection(message_id, "'tasks' must be a non-empty list of submissions")]
    if len(items) > MAX_BATCH:
        return [Rejection(message_id, f"'tasks' holds {len(items)} submissions, over {MAX_BATCH}")]
    out: list[Parsed] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            out.append(Rejection(f"{message_id}-{index}" if message_id else None,
                                 f"'tasks'[{index}] is not an object of submit arguments"))
            continue
        if not item.get("task_id") and message_id:
            item = {**item, "task_id": f"{message_id}-{index}"}
        out.append(_submission(item, message_id, known_algorithms, inline_limit))
    return out


def parse(
    headers: dict[str, Any] | None,
    body: Any,
    *,
    known_algorithms: set[str] | frozenset[str],
    inline_limit: int,
) -> Parsed:
    """Turn a decoded Celery message (protocol 1 or 2) into a request or a rejection."""
    headers = headers or {}
    name, message_id, kwargs = _unwrap(headers, body)
    if not isinstance(kwargs, dict):
        return Rejection(message_id, "message body is not a Celery task with keyword arguments")
    if name == SESSION_TASK:
        return _parse_session(kwargs, message_id)
    if name == ADMIN_TASK:
        return _parse_admin(kwargs, message_id)
    if name != SUBMIT_TASK:
        return Rejection(
            message_id, f"task name {name!r} is not accepted on the ingress queue; use {SUBMIT_TASK!r}"
        )
    return _submission(kwargs, message_id, known_algorithms, inline_limit)


def _submission(kwargs: dict[str, Any], message_id: str | None,
                known_algorithms: set[str] | frozenset[str], inline_limit: int) -> Parsed:
    task_id = kwargs.get("task_id") or message_id
    if not isinstance(task_id, str) or not ID_RE.match(task_id):
        return Rejection(
            message_id,
            f"task_id {task_id!r} is not valid: use up to 200 letters, digits and ._:@+-",
        )
    algorithm = kwargs.get("algorithm")
    session = kwargs.get("session") or "default"

    def reject(reason: str) -> Rejection:
        algo = algorithm if isinstance(algorithm, str) else None
        sess = session if isinstance(session, str) else None
        return Rejection(task_id, reason, algo, sess)

    if not algorithm:
        return reject("missing 'algorithm': name the algorithm to run, e.g. 'corral.echo'")
    if not isinstance(algorithm, str):
        return reject(f"'algorithm' must be a string, got {type(algorithm).__name__}")
    if algorithm not in known_algorithms:
        return reject(
            f"unknown algorithm {algorithm!r}: no worker registers it "
            f"(known: {', '.join(sorted(known_algorithms)) or 'none'})"
        )
    if not isinstance(session, str) or not SESSION_RE.match(session):
        return reject(f"session {session!r} is not a valid name (letters, digits, ._-)")
    args = kwargs.get("args")
    size = len(json.dumps(args, separators=(",", ":")))
    if size > inline_limit:
        return reject(
            f"args are {size} bytes, over the {inline_limit}-byte inline limit "
            "(CORRAL_INLINE_LIMIT); store large inputs elsewhere and pass a reference"
        )
    gpus = kwargs.get("gpus", 1)
    if gpus is None:
        gpus = 1
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        return reject(f"'gpus' must be a positive integer, got {gpus!r}")
    if gpus != 1:
        return reject(f"'gpus': {gpus} asks for a multi-GPU task; this scheduler places 1 GPU per task")
    try:
        retry = RetryPolicy.parse(kwargs.get("retry")).to_dict()
    except ValueError as exc:
        return reject(str(exc))
    after = _after(kwargs.get("after"), task_id)
    if isinstance(after, str):
        return reject(after)
    return Submission(task_id, algorithm, args, session, gpus, retry, after)


def _after(raw: Any, task_id: str) -> dict[str, str] | None | str:
    """`after`: upstream task ids, as a list (inputs named by id) or {input name: id};
    the normalized mapping, or the reason it is refused."""
    if raw is None or raw == [] or raw == {}:
        return None
    if isinstance(raw, list):
        raw = {str(up): up for up in raw}
    if not isinstance(raw, dict):
        return f"'after' must be a list of task ids or an object of input name -> task id, got {raw!r}"
    if len(raw) > MAX_UPSTREAM:
        return f"'after' names {len(raw)} upstream tasks, over {MAX_UPSTREAM}"
    for name, up in raw.items():
        if not isinstance(up, str) or not ID_RE.match(up):
            return f"'after' input {name!r}: {up!r} is not a valid task id"
        if up == task_id:
            return "'after' names the task itself"
        if not INPUT_RE.match(name) and name != up:
            return f"'after' input name {name!r} is not valid (letters, digits, _.-)"
    return dict(raw)


def _unwrap(headers: dict[str, Any], body: Any) -> tuple[str | None, str | None, Any]:
    if "task" in headers:  # protocol 2: body is [args, kwargs, embed]
        kwargs: Any = None
        if isinstance(body, list | tuple) and len(body) >= 2:
            kwargs = body[1]
        return headers.get("task"), valid_id(headers.get("id")), kwargs
    if isinstance(body, dict) and "task" in body:  # protocol 1
        return body.get("task"), valid_id(body.get("id")), body.get("kwargs")
    return None, valid_id(headers.get("id")), None


def valid_id(value: Any) -> str | None:
    return value if isinstance(value, str) and ID_RE.match(value) else None


def _parse_session(kwargs: dict[str, Any], message_id: str | None) -> Parsed:
    name = kwargs.get("name")
    if not isinstance(name, str) or not SESSION_RE.match(name):
        return Rejection(message_id, f"session name {name!r} is not valid (letters, digits, ._-)")
    action = kwargs.get("action", "open")
    if action not in ("open", "close"):
        return Rejection(message_id, f"session action {action!r} must be 'open' or 'close'")
    try:
        fixed = int(kwargs.get("fixed_workers", 0))
        ratio = float(kwargs.get("share_ratio", 1.0))
        max_workers = kwargs.get("max_workers")
        max_workers = None if max_workers is None else int(max_workers)
        priority = int(kwargs.get("priority", 0))
    except (TypeError, ValueError) as exc:
        return Rejection(message_id, f"session {name!r}: bad number ({exc})")
    if fixed < 0 or ratio <= 0 or (max_workers is not None and max_workers < fixed):
        return Rejection(
            message_id,
            f"session {name!r}: need fixed_workers >= 0, share_ratio > 0, max_workers >= fixed",
        )
    algorithms = tuple(a for a in kwargs.get("algorithms") or () if isinstance(a, str))
    return SessionRequest(name, action, fixed, ratio, max_workers, priority, algorithms)


def _parse_admin(kwargs: dict[str, Any], message_id: str | None) -> Parsed:
    action = kwargs.get("action")
    if action not in ADMIN_ACTIONS:
        return Rejection(message_id, f"admin action {action!r} must be one of {', '.join(ADMIN_ACTIONS)}")
    node = kwargs.get("node")
    if not isinstance(node, str) or not SESSION_RE.match(node):
        return Rejection(message_id, f"admin {action}: node {node!r} is not a valid node name")
    gpu = kwargs.get("gpu")
    if action.startswith("gpu.") and (not isinstance(gpu, int) or isinstance(gpu, bool) or gpu < 0):
        return Rejection(message_id, f"admin {action}: gpu must be a GPU index, got {gpu!r}")
    return AdminRequest(action, node, gpu if action.startswith("gpu.") else None,
                        str(kwargs.get("reason") or "by operator"))
