"""Validation of ingress messages (docs/contracts.md): pure, never raises on bad input.

A Celery message becomes a Submission, a SessionRequest, an AdminRequest or a Rejection
with a reason a person can act on. This module is the one strict definition of what the
ingress takes: ids matched whole, finite numbers within bounds, args of bounded size and
nesting that are standard JSON, retry budgets within `RetryPolicy`'s bounds.
`read()` is the entry point: it never raises, whatever the bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from corral.base.keys import ADMIN_TASK, BLOB, SESSION_TASK, SUBMIT_TASK
from corral.base.limits import Unfit, check_json, real_number, short, whole_number
from corral.base.retry import DEFAULT, RetryPolicy

# Matched whole (`fullmatch`): `$` would also match before a trailing newline.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}")
SESSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Submission:
    task_id: str
    algorithm: str
    args: Any
    session: str = "default"
    gpus: int = 1
    retry: dict[str, Any] = field(default_factory=DEFAULT.to_dict)
    after: dict[str, str] | None = None  # input name -> upstream task id
    size: int = field(default=0, compare=False)  # bytes of the args as compact JSON
    fresh: bool = field(default=False, compare=False)  # the producer made the id up for it


@dataclass(frozen=True)
class SessionRequest:
    name: str
    action: str  # open | close
    fixed_workers: int = 0
    share_ratio: float = 1.0
    max_workers: int | None = None
    priority: int = 0
    algorithms: tuple[str, ...] = ()
    update: bool = False  # an open that may change an open session's settings
    owner: str | None = None  # the client that opens (and alone may close) it
    force: bool = False  # a close by an operator, whoever opened it
    request_id: str | None = None  # the message's id: the record of a refusal
    auto: bool = False  # opened by a submission to a session nobody opened


@dataclass(frozen=True)
class AdminRequest:
    action: str  # gpu.quarantine | gpu.release | node.drain | node.undrain | task.cancel | task.migrate
    node: str  # "" for a task action
    gpu: int | None = None
    reason: str = ""
    task_id: str | None = None  # a task action's task
    move: bool = True  # node.drain: running work checkpoints and moves (False: it finishes there)


@dataclass(frozen=True)
class Rejection:
    task_id: str | None
    reason: str
    algorithm: str | None = None
    session: str | None = None


Parsed = Submission | SessionRequest | AdminRequest | Rejection
ADMIN_ACTIONS = ("gpu.quarantine", "gpu.release", "node.drain", "node.undrain", "task.cancel",
                 "task.migrate")
MAX_GANG = 64  # GPUs one task may ask for, all on one node
MAX_BATCH = 10_000  # tasks in one `corral.submit` message of the batch form
MAX_UPSTREAM = 64  # upstream tasks one task may wait for
INPUT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
ALGORITHM_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")
MAX_FIXED = 100_000  # GPUs a session may ask to hold (the allocator caps it to the cluster)
MAX_SHARE_RATIO = 1e6
MAX_PRIORITY = 1000
MAX_ALGORITHMS = 64
MAX_REASON = 500
UNIDENTIFIED = "rejected-"  # id of the record of a rejected message that named no usable id


def read(headers: Any, body: Any, error: str | None, raw: bytes | str | None, *,
         known_algorithms: set[str] | frozenset[str], inline_limit: int) -> list[Parsed]:
    """Every request one ingress message holds, or the reasons it is refused. Never raises:
    whatever goes wrong becomes a Rejection, and a rejection whose message names no usable
    id is recorded under one derived from the message's bytes (the same bytes, the same id)."""
    headers = headers if isinstance(headers, dict) else {}
    try:
        message_id = valid_id(headers.get("id"))
        if error:
            out: list[Parsed] = [Rejection(message_id, str(error))]
        else:
            out = parse_all(headers, body, known_algorithms=known_algorithms, inline_limit=inline_limit)
    except Exception as exc:  # a parser bug must not stop the leader: this message is refused
        out = [Rejection(None, f"message could not be read: {type(exc).__name__}: {short(str(exc), 200)}")]
    fixed: list[Parsed] = []
    for index, item in enumerate(out):
        if isinstance(item, Rejection):
            task_id = item.task_id or unidentified(raw, index if len(out) > 1 else None)
            item = Rejection(task_id, readable(item.reason), item.algorithm, item.session)
        fixed.append(item)
    return fixed


def unidentified(raw: bytes | str | None, index: int | None = None) -> str:
    """A stable id for the record of a rejected message that named no usable id."""
    data = raw.encode() if isinstance(raw, str) else (raw or b"")
    digest = hashlib.sha256(data).hexdigest()[:24]
    return UNIDENTIFIED + digest + ("" if index is None else f"-{index}")


def readable(reason: str) -> str:
    """A reason as a person reads it: printable, one line, at most MAX_REASON characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(reason))
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


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
            out.append(Rejection(_member_id(message_id, index),
                                 f"'tasks'[{index}] is not an object of submit arguments"))
            continue
        if not item.get("task_id") and (member := _member_id(message_id, index)):
            item = {**item, "task_id": member}
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
            message_id, f"task name {short(name)} is not accepted on the ingress queue; use {SUBMIT_TASK!r}"
        )
    return _submission(kwargs, message_id, known_algorithms, inline_limit)


def _submission(kwargs: dict[str, Any], message_id: str | None,
                known_algorithms: set[str] | frozenset[str], inline_limit: int) -> Parsed:
    task_id = kwargs.get("task_id") or message_id
    if not isinstance(task_id, str) or not ID_RE.fullmatch(task_id):
        return Rejection(
            message_id,
            f"task_id {short(task_id)} is not valid: use up to 200 letters, digits and ._:@+-",
        )
    algorithm = kwargs.get("algorithm")
    session = kwargs.get("session") or "default"

    def reject(reason: str) -> Rejection:
        algo = algorithm if isinstance(algorithm, str) and ALGORITHM_RE.fullmatch(algorithm) else None
        sess = session if isinstance(session, str) and SESSION_RE.fullmatch(session) else None
        return Rejection(task_id, reason, algo, sess)

    if not algorithm:
        return reject("missing 'algorithm': name the algorithm to run, e.g. 'corral.echo'")
    if not isinstance(algorithm, str):
        return reject(f"'algorithm' must be a string, got {type(algorithm).__name__}")
    if algorithm not in known_algorithms:
        return reject(
            f"unknown algorithm {short(algorithm)}: no worker registers it "
            f"(known: {', '.join(sorted(known_algorithms)) or 'none'})"
        )
    if not isinstance(session, str) or not SESSION_RE.fullmatch(session):
        return reject(f"session {short(session)} is not a valid name (letters, digits, ._-)")
    args = kwargs.get("args")
    try:
        size = check_json(args, "args", inline_limit)
    except Unfit as exc:
        if "bytes, over" in str(exc):
            return reject(f"{str(exc).replace('-byte limit', '-byte inline limit')} (CORRAL_INLINE_LIMIT); "
                          "store large inputs elsewhere and pass a reference")
        return reject(str(exc))
    if isinstance(args, dict) and BLOB in args and len(args) == 1:
        return reject(f"args of the form {{{BLOB!r}: ...}} are reserved for corral's own references")
    gpus = kwargs.get("gpus", 1)
    if gpus is None:
        gpus = 1
    if type(gpus) is not int or gpus < 1:
        return reject(f"'gpus' must be a positive integer, got {short(gpus)}")
    if gpus > MAX_GANG:
        return reject(f"'gpus': {gpus} is over {MAX_GANG}: a task's GPUs are all on one node")
    try:
        retry = RetryPolicy.parse(kwargs.get("retry")).to_dict()
    except ValueError as exc:
        return reject(str(exc))
    after = _after(kwargs.get("after"), task_id)
    if isinstance(after, str):
        return reject(after)
    fresh = kwargs.get("fresh", False)
    if type(fresh) is not bool:
        return reject(f"'fresh' must be true or false, got {short(fresh)}")
    return Submission(task_id, algorithm, args, session, gpus, retry, after, size, fresh)


def _after(raw: Any, task_id: str) -> dict[str, str] | None | str:
    """`after`: upstream task ids, as a list (inputs named by id) or {input name: id};
    the normalized mapping, or the reason it is refused."""
    if raw is None or raw == [] or raw == {}:
        return None
    if isinstance(raw, list):
        if len(raw) > MAX_UPSTREAM:
            return f"'after' names {len(raw)} upstream tasks, over {MAX_UPSTREAM}"
        if not all(isinstance(up, str) for up in raw):
            return "'after' must list task ids (strings)"
        raw = {up: up for up in raw}
    if not isinstance(raw, dict):
        return f"'after' must be a list of task ids or an object of input name -> task id, got {short(raw)}"
    if len(raw) > MAX_UPSTREAM:
        return f"'after' names {len(raw)} upstream tasks, over {MAX_UPSTREAM}"
    for name, up in raw.items():
        if not isinstance(up, str) or not ID_RE.fullmatch(up):
            return f"'after' input {short(name)}: {short(up)} is not a valid task id"
        if up == task_id:
            return "'after' names the task itself"
        if not INPUT_RE.fullmatch(name) and name != up:
            return f"'after' input name {short(name)} is not valid (letters, digits, _.-)"
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


def _member_id(message_id: str | None, index: int) -> str | None:
    """The id of the index-th task of a batch message that gives none of its own."""
    return valid_id(f"{message_id}-{index}") if message_id else None


def valid_id(value: Any) -> str | None:
    return value if isinstance(value, str) and ID_RE.fullmatch(value) else None


def _parse_session(kwargs: dict[str, Any], message_id: str | None) -> Parsed:
    name = kwargs.get("name")
    if not isinstance(name, str) or not SESSION_RE.fullmatch(name):
        return Rejection(message_id, f"session name {short(name)} is not valid (letters, digits, ._-)")
    action = kwargs.get("action", "open")
    if action not in ("open", "close"):
        return Rejection(message_id, f"session {name}: action {short(action)} must be 'open' or 'close'")
    try:
        fixed = whole_number(kwargs.get("fixed_workers", 0), "fixed_workers", 0, MAX_FIXED)
        ratio = real_number(kwargs.get("share_ratio", 1.0), "share_ratio", 0.0, MAX_SHARE_RATIO,
                            above_low=True)
        max_workers = kwargs.get("max_workers")
        if max_workers is not None:
            max_workers = whole_number(max_workers, "max_workers", max(fixed, 1), MAX_FIXED)
        priority = whole_number(kwargs.get("priority", 0), "priority", -MAX_PRIORITY, MAX_PRIORITY)
        algorithms = kwargs.get("algorithms") or []
        if (not isinstance(algorithms, list) or len(algorithms) > MAX_ALGORITHMS
                or not all(isinstance(a, str) and ALGORITHM_RE.fullmatch(a) for a in algorithms)):
            raise Unfit(f"algorithms must be a list of at most {MAX_ALGORITHMS} algorithm names")
        update = kwargs.get("update", False)
        if type(update) is not bool:
            raise Unfit(f"update must be true or false, got {short(update)}")
        owner = kwargs.get("owner")
        if owner is not None and (not isinstance(owner, str) or not ID_RE.fullmatch(owner)):
            raise Unfit(f"owner must be a client id, got {short(owner)}")
    except Unfit as exc:
        return Rejection(message_id, f"session {name}: {exc}")
    return SessionRequest(name, action, fixed, ratio, max_workers, priority, tuple(algorithms),
                          update, owner, kwargs.get("force") is True, message_id)


def _parse_admin(kwargs: dict[str, Any], message_id: str | None) -> Parsed:
    action = kwargs.get("action")
    if action not in ADMIN_ACTIONS:
        return Rejection(message_id,
                         f"admin action {short(action)} must be one of {', '.join(ADMIN_ACTIONS)}")
    reason = kwargs.get("reason") or "by operator"
    reason = readable(reason if isinstance(reason, str) else short(reason))[:200]
    if action.startswith("task."):
        task_id = kwargs.get("task_id")
        if not isinstance(task_id, str) or not ID_RE.fullmatch(task_id):
            return Rejection(message_id, f"admin {action}: task_id {short(task_id)} is not a valid task id")
        return AdminRequest(action, "", reason=reason, task_id=task_id)
    node = kwargs.get("node")
    if not isinstance(node, str) or not SESSION_RE.fullmatch(node):
        return Rejection(message_id, f"admin {action}: node {short(node)} is not a valid node name")
    gpu = kwargs.get("gpu")
    if action.startswith("gpu.") and (type(gpu) is not int or not 0 <= gpu < 1_000_000):
        return Rejection(message_id, f"admin {action}: gpu must be a GPU index, got {short(gpu)}")
    return AdminRequest(action, node, gpu if action.startswith("gpu.") else None, reason,
                        move=kwargs.get("move") is not False)
