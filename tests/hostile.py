"""Hypothesis strategies for careless and hostile ingress: valid message shapes with
hostile values, other content types, raw bytes. Shared by the parser fuzz (unit) and the
cluster fuzz (integration), so both send the same kinds of message."""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from typing import Any

from hypothesis import strategies as st

from corral.base.keys import ADMIN_TASK, SESSION_TASK, SUBMIT_TASK


class Deep:
    """Args nested `depth` levels: kept as a count, written out as JSON text by hand, since
    Python's own encoder (and decoder) give up past about a thousand levels."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def json(self) -> str:
        opens = "".join("[" if i % 2 else '{"d":' for i in range(self.depth))
        closes = "".join("]" if i % 2 else "}" for i in reversed(range(self.depth)))
        return opens + "1" + closes


def nest(depth: int, leaf: Any = 1) -> Any:
    """Args nested `depth` levels, as Python values (for depths Python's json can encode)."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"d": value}
    return value


def _dumps(value: Any) -> str:
    """json.dumps (NaN and Infinity as Python writes them), with Deep values spliced in."""
    deep: list[str] = []

    def default(o: Any) -> Any:
        if isinstance(o, Deep):
            deep.append(o.json())
            return f"@@deep{len(deep) - 1}@@"
        raise TypeError(type(o).__name__)

    text = json.dumps(value, default=default)
    for i, piece in enumerate(deep):
        text = text.replace(f'"@@deep{i}@@"', piece)
    return text


HOSTILE_NUMBERS = st.sampled_from([
    float("nan"), float("inf"), float("-inf"), 10**30, -(10**30), -1, 0, 1.5, True, False, 2**63,
    1e308, -0.0, 3,
])
HOSTILE_STRINGS = st.sampled_from([
    "x\n", "x", "", " ", "\x00", "s\n", "ü", "a" * 300, "../../etc/passwd", "/tmp/corral-victim",
    "corral.echo\n", "corral.echo", "corral.sleep", "x" * 5000, "$(rm -rf /)", "\u202e",
])
LEAVES = st.one_of(st.none(), HOSTILE_NUMBERS, HOSTILE_STRINGS, st.integers(), st.floats(),
                   st.text(max_size=20))
VALUES = st.one_of(
    LEAVES,
    st.lists(LEAVES, max_size=4),
    st.dictionaries(st.text(max_size=8), LEAVES, max_size=4),
    st.integers(0, 60).map(nest),
    st.integers(0, 12_000).map(Deep),  # nested up to 12,000 deep
)


def maybe(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), values.map(lambda v: {field: v}))


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in parts:
        out.update(p)
    return out


RETRY = st.one_of(VALUES, st.fixed_dictionaries({}, optional={
    "local": VALUES, "hosts": VALUES, "backoff": VALUES, "other": VALUES}))
SUBMIT_KWARGS = st.tuples(
    maybe("algorithm", st.one_of(HOSTILE_STRINGS, VALUES)), maybe("args", VALUES),
    maybe("session", st.one_of(HOSTILE_STRINGS, VALUES)),
    maybe("task_id", st.one_of(HOSTILE_STRINGS, VALUES)),
    maybe("gpus", VALUES), maybe("retry", RETRY), maybe("after", VALUES), maybe("fresh", VALUES),
).map(lambda parts: _merge(list(parts)))
SESSION_KWARGS = st.tuples(
    maybe("name", st.one_of(HOSTILE_STRINGS, VALUES)),
    maybe("action", st.sampled_from(["open", "close", "x", 1])),
    maybe("fixed_workers", VALUES), maybe("share_ratio", VALUES), maybe("max_workers", VALUES),
    maybe("priority", VALUES), maybe("algorithms", VALUES), maybe("update", VALUES),
    maybe("owner", VALUES),
).map(lambda parts: _merge(list(parts)))
ADMIN_KWARGS = st.tuples(
    maybe("action", st.sampled_from(["gpu.quarantine", "gpu.release", "node.drain", "x"])),
    maybe("node", st.one_of(HOSTILE_STRINGS, VALUES)), maybe("gpu", VALUES), maybe("reason", VALUES),
).map(lambda parts: _merge(list(parts)))

# (task name, kwargs): what a Celery producer would put in a protocol-2 body.
TASK_MESSAGES = st.one_of(
    st.tuples(st.just(SUBMIT_TASK), SUBMIT_KWARGS),
    st.tuples(st.just(SUBMIT_TASK), st.lists(SUBMIT_KWARGS, max_size=3).map(lambda t: {"tasks": t})),
    st.tuples(st.just(SUBMIT_TASK), st.sampled_from([{"tasks": []}, {"tasks": 5}, {"tasks": [1, None]}])),
    st.tuples(st.just(SESSION_TASK), SESSION_KWARGS),
    st.tuples(st.just(ADMIN_TASK), ADMIN_KWARGS),
    st.tuples(st.sampled_from(["corral.run", "celery.ping", "x" * 300, ""]), SUBMIT_KWARGS),
)


def envelope(name: Any, kwargs: Any, message_id: str, body: Any = None,
             content_type: str = "application/json", raw_body: bytes | None = None) -> bytes:
    """A kombu Redis envelope as a Celery producer writes it (body in base64)."""
    if raw_body is None:
        payload = [[], kwargs, {}] if body is None else body
        raw_body = _dumps(payload).encode()  # with NaN and Infinity: what Celery's encoder writes
    return json.dumps({
        "body": base64.b64encode(raw_body).decode(), "content-encoding": "utf-8",
        "content-type": content_type, "headers": {"task": name, "id": message_id, "lang": "py"},
        "properties": {"body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": "", "routing_key": "corral.ingress"},
                       "priority": 0},
    }).encode()


def _odd(message_id: str, kind: int, data: bytes) -> bytes:
    if kind == 0:
        return data  # raw bytes, no envelope at all
    if kind == 1:
        return envelope(SUBMIT_TASK, None, message_id, content_type="application/x-python-serialize",
                        raw_body=pickle.dumps({"algorithm": "corral.echo"}))
    if kind == 2:
        return envelope(SUBMIT_TASK, None, message_id, content_type="application/x-yaml",
                        raw_body=b"algorithm: corral.echo")
    if kind == 3:
        return envelope(SUBMIT_TASK, None, message_id, raw_body=b'{"truncated": [1, 2')
    if kind == 4:
        return envelope(SUBMIT_TASK, None, message_id, body={"protocol": 1, "kwargs": "no"})
    return envelope(SUBMIT_TASK, None, message_id, content_type="text/plain", raw_body=data)


def raw_messages(message_id: str) -> st.SearchStrategy[bytes]:
    """A whole Redis payload: usually a well-formed envelope of a hostile task message,
    sometimes another content type, a broken envelope or plain bytes."""
    return st.one_of(
        TASK_MESSAGES.map(lambda m: envelope(m[0], m[1], message_id)),
        st.tuples(st.integers(0, 5), st.binary(max_size=64)).map(lambda p: _odd(message_id, *p)),
    )
