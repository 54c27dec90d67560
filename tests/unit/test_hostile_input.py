"""Careless and hostile ingress against the parsers and the core alone: thousands of
messages, none of which may raise, and each bad one rejected with a readable reason."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.base.keys import BUILTIN_ALGORITHMS
from corral.base.limits import MAX_DEPTH
from corral.base.retry import MAX_BACKOFF, MAX_HOSTS, MAX_LOCAL
from corral.base.wire import decode
from corral.scheduler.ingress import (
    ID_RE,
    SESSION_RE,
    AdminRequest,
    Rejection,
    SessionRequest,
    Submission,
    read,
)
from tests.hostile import raw_messages

from .harness import ONE_NODE, make

CORE = make(ONE_NODE)  # one core for every example: state piles up as in a long-lived leader
CLOCK = [10.0]


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def check(parsed: object) -> None:
    if isinstance(parsed, Rejection):
        assert parsed.reason and len(parsed.reason) <= 600 and parsed.reason.isprintable()
        assert parsed.task_id is None or ID_RE.fullmatch(parsed.task_id)
    elif isinstance(parsed, Submission):
        assert ID_RE.fullmatch(parsed.task_id) and SESSION_RE.fullmatch(parsed.session)
        assert parsed.algorithm in BUILTIN_ALGORITHMS
        json.dumps(parsed.args, allow_nan=False)
        assert depth(parsed.args) <= MAX_DEPTH
        r = parsed.retry
        assert 0 <= r["local"] <= MAX_LOCAL and 0 <= r["hosts"] <= MAX_HOSTS
        assert 0 <= r["backoff"] <= MAX_BACKOFF
        assert type(parsed.fresh) is bool
    elif isinstance(parsed, SessionRequest):
        assert SESSION_RE.fullmatch(parsed.name)
        assert type(parsed.fixed_workers) is int and 0 <= parsed.fixed_workers <= 100_000
        assert math.isfinite(parsed.share_ratio) and parsed.share_ratio > 0
    else:
        assert isinstance(parsed, AdminRequest)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_no_hostile_message_raises_and_each_bad_one_has_a_reason(data: st.DataObject) -> None:
    message_id = data.draw(st.sampled_from(["m-1", "m-2", "x\n", ""]))
    raw = data.draw(raw_messages(message_id))
    headers, body, error = decode(raw)
    parsed = read(headers, body, error, raw, known_algorithms=BUILTIN_ALGORITHMS, inline_limit=4096)
    assert parsed
    for p in parsed:
        check(p)
        CLOCK[0] += 0.01
        CORE.submit(p, CLOCK[0], None)
    CORE.tick(CLOCK[0])
    for task in CORE.take_effects().tasks.values():
        if task is not None:
            json.dumps(task.to_dict(), allow_nan=False)
    json.dumps(CORE.summary(), allow_nan=False)
