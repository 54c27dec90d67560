"""Attempts claimed as a GPU worker's main process takes their message (corral/tasks/claims.py),
against a real redis-server through corral's kombu transport: the claim goes with the
delivery's record, its verdict travels in a header (or, in an event loop, a ticket whose
verdicts the child finds in memory it shares with the main process), and only this worker's
verdicts count."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from kombu.asynchronous import Hub

from corral.base import fence, transport
from corral.base.config import Settings
from corral.base.keys import NORMAL, RUN_TASK
from corral.base.wire import encode_task
from corral.tasks import claims, runner
from corral.tasks.app import make_app
from tests.conftest import start_redis

CLUSTER = "t"
QUEUE = "corral.gpu.node-1.0"


@pytest.fixture
def taking(tmp_path: Path) -> Iterator[tuple[redis.Redis, Any]]:
    """A Redis, and a function that publishes a run message and takes it as a worker's main
    process does (this process registered as its child)."""
    proc, url = start_redis(tmp_path)
    r = redis.Redis.from_url(url)
    app = make_app(Settings(cluster=CLUSTER, broker=url), worker=True)
    transport.on_delivery = lambda message: claims.at_delivery(CLUSTER, message)
    claims.register_child(os.getpid())
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel

            def take(message: dict[str, Any], headers: dict[str, Any] | None = None) -> Any:
                key, payload = encode_task(QUEUE, RUN_TASK, message["attempt_id"], message, NORMAL)
                if headers:
                    envelope = json.loads(payload)
                    envelope["headers"].update(headers)
                    payload = json.dumps(envelope)
                r.lpush(key, payload)
                return kombu.Queue(QUEUE, routing_key=QUEUE)(channel).get(no_ack=False)

            yield r, take
    finally:
        transport.on_delivery = None
        claims.register_child(0)
        r.close()
        proc.kill()
        proc.wait()


def verdicts_of(taken: Any, count: int = 1) -> list[str] | None:
    """The verdicts the main process posted for a message it took (none: None)."""
    claimed = taken.headers.get(claims.HEADER)
    return None if claimed is None else claims._posted(claimed["ticket"], count)


def attempt(n: int) -> dict[str, Any]:
    return {"task_id": f"t{n}", "attempt_id": f"t{n}.a1", "number": 1, "algorithm": "corral.echo",
            "args": {"n": n}, "node": "node-1", "gpu": 0}


def issue(r: redis.Redis, message: dict[str, Any]) -> None:
    with r.pipeline() as pipe:
        fence.issue(pipe, CLUSTER, message["attempt_id"], message)
        pipe.execute()


def test_an_issued_attempt_is_claimed_for_the_child_as_its_message_is_taken(taking: Any) -> None:
    r, take = taking
    message = attempt(1)
    issue(r, message)
    taken = take(message)
    verdict = taken.headers[claims.HEADER]
    assert verdict["attempts"] == ["t1.a1"] and verdicts_of(taken) == ["run"]
    assert r.get(fence.key(CLUSTER, "t1.a1")) == fence.started_by(os.getpid())
    assert claims.given(verdict, [message]) == ["run"]
    assert r.hlen(taken.channel.unacked_key) == 1  # the delivery's record went with the claim


def test_every_attempt_of_a_batch_is_claimed_in_the_same_call(taking: Any) -> None:
    r, take = taking
    members = [attempt(2), attempt(3)]
    issue(r, members[0])  # the second was never issued
    batch = {"task_id": "b", "attempt_id": "b", "batch": members}
    assert verdicts_of(take(batch), 2) == ["run", "forged"]
    assert r.get(fence.key(CLUSTER, "t3.a1")) is None


def test_an_attempt_no_leader_issued_is_found_forged_and_its_fence_left_alone(taking: Any) -> None:
    r, take = taking
    assert verdicts_of(take(attempt(4))) == ["forged"]
    assert r.get(fence.key(CLUSTER, "t4.a1")) is None


def test_a_superseded_attempt_is_found_superseded(taking: Any) -> None:
    r, take = taking
    message = attempt(5)
    issue(r, message)
    with r.pipeline() as pipe:
        fence.supersede(pipe, CLUSTER, "t5.a1")
        pipe.execute()
    assert verdicts_of(take(message)) == ["superseded"]


def test_verdicts_a_message_brought_with_it_are_replaced_and_never_believed(taking: Any) -> None:
    r, take = taking
    message = attempt(6)  # not issued: a forger's message, with verdicts of its own
    claims.post(999_999, ["run"])
    own = {"token": "guess", "attempts": ["t6.a1"], "ticket": 999_999}
    taken = take(message, {claims.HEADER: own})
    assert verdicts_of(taken) == ["forged"]
    assert claims.given(own, [message]) is None


def test_without_a_live_child_nothing_is_claimed_and_the_child_claims_for_itself(taking: Any) -> None:
    r, take = taking
    claims.register_child(0)
    message = attempt(7)
    issue(r, message)
    taken = take(message)
    assert claims.HEADER not in taken.headers
    assert r.get(fence.key(CLUSTER, "t7.a1")) == fence.issued(fence.digest(message))


def test_verdicts_for_other_attempts_than_the_message_holds_are_not_believed() -> None:
    claims.post(999_998, ["run"])
    verdict = {"token": claims._TOKEN, "attempts": ["x.a1"], "ticket": 999_998}
    assert claims.given(verdict, [attempt(8)]) is None
    assert claims.given({**verdict, "attempts": ["t8.a1"]}, [attempt(8)]) == ["run"]


@pytest.mark.parametrize("kwargs", [
    {"task_id": "t9", "attempt_id": "t9.a1", "args": {"x": float("nan")}},  # not JSON to the digest
    {"task_id": "t9\n", "attempt_id": "t9.a1\n", "args": None},  # trailing newlines
    {"task_id": 9, "attempt_id": ["t9.a1"]},  # wrong types
    {"batch": "not a list", "task_id": "b", "attempt_id": "b"},
    {"batch": [1, None, {"task_id": "t9"}], "task_id": "b", "attempt_id": "b"},
    {"task_id": "t9", "attempt_id": "t9.a1", "args": json.loads("[" * 500 + "]" * 500)},  # deep
])
def test_a_hostile_run_message_is_taken_and_recorded_without_a_verdict_the_child_could_trust(
        taking: Any, kwargs: dict[str, Any]) -> None:
    r, take = taking
    taken = take({"attempt_id": "x", **kwargs})
    assert r.hlen(taken.channel.unacked_key) == 1  # recorded for kombu's restore all the same
    verdicts = verdicts_of(taken)
    assert verdicts is None or "run" not in verdicts


@pytest.fixture
def in_a_loop(taking: Any) -> Iterator[tuple[redis.Redis, Any, Any]]:
    """As `taking`, with the transport in an event loop, as in a worker's main process."""
    hub = Hub()
    transport._loop = hub
    try:
        yield *taking, hub
    finally:
        transport._loop = None
        hub.close()


def answered(hub: Hub, ticket: int, count: int) -> list[str] | None:
    """The event loop run until the ticket's verdicts are posted (at most five seconds)."""
    deadline = time.monotonic() + 5
    while (verdicts := claims._posted(ticket, count)) is None and time.monotonic() < deadline:
        hub.run_once()
    return verdicts


def test_in_an_event_loop_the_message_goes_on_with_a_ticket_before_the_claim_is_answered(
        in_a_loop: Any) -> None:
    r, take, hub = in_a_loop
    message = attempt(10)
    issue(r, message)
    claimed = take(message).headers[claims.HEADER]
    assert "verdicts" not in claimed and claimed["ticket"] > 0
    assert answered(hub, claimed["ticket"], 1) == ["run"]
    assert claims.given(claimed, [message]) == ["run"]
    assert r.get(fence.key(CLUSTER, "t10.a1")) == fence.started_by(os.getpid())


def test_the_record_goes_out_before_the_message_is_handed_on(in_a_loop: Any) -> None:
    r, take, hub = in_a_loop
    message = attempt(11)
    issue(r, message)
    taken = take(message)
    answered(hub, taken.headers[claims.HEADER]["ticket"], 1)
    assert r.hlen(taken.channel.unacked_key) == 1


def test_each_message_of_a_loop_gets_its_own_tickets_verdicts(in_a_loop: Any) -> None:
    r, take, hub = in_a_loop
    issued = attempt(12)
    issue(r, issued)
    batch = {"task_id": "b2", "attempt_id": "b2", "batch": [issued, attempt(13)]}
    first = take(batch).headers[claims.HEADER]
    assert answered(hub, first["ticket"], 2) == ["run", "forged"]
    second = take(attempt(14)).headers[claims.HEADER]
    assert second["ticket"] > first["ticket"]
    assert answered(hub, second["ticket"], 1) == ["forged"]
    assert claims._posted(first["ticket"], 2) is None  # the slot holds the latest only


def test_a_child_whose_ticket_is_never_answered_claims_for_itself(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims, "WAIT", 0.05)
    message = attempt(15)
    claimed = {"token": claims._TOKEN, "attempts": ["t15.a1"], "ticket": 10**12}
    assert claims.given(claimed, [message]) is None


def test_a_ticket_from_anywhere_else_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    def waited(*_: Any) -> None:
        raise AssertionError("waited for a forged ticket")

    monkeypatch.setattr(claims, "_await", waited)
    claimed = {"token": "guess", "attempts": ["t16.a1"], "ticket": 1}
    assert claims.given(claimed, [attempt(16)]) is None


def test_a_claim_in_flight_when_the_event_loop_is_reset_is_answered_once_the_next_goes_out(
        in_a_loop: Any) -> None:
    r, take, hub = in_a_loop
    first, second = attempt(17), attempt(18)
    issue(r, first)
    issue(r, second)
    one = take(first).headers[claims.HEADER]
    hub.reset()  # as Celery does when its consumer restarts: every reader forgotten
    two = take(second).headers[claims.HEADER]
    assert answered(hub, two["ticket"], 1) == ["run"]
    assert r.get(fence.key(CLUSTER, "t17.a1")) == fence.started_by(os.getpid())
    assert one["ticket"] < two["ticket"]


def test_a_claim_redis_refuses_is_left_to_the_child_and_the_next_one_is_answered(
        in_a_loop: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r, take, hub = in_a_loop
    refused, accepted = attempt(19), attempt(20)
    issue(r, refused)
    issue(r, accepted)
    monkeypatch.setattr(fence, "TTL", "not a number")  # Redis refuses that call's SET
    first = take(refused).headers[claims.HEADER]
    monkeypatch.undo()
    second = take(accepted).headers[claims.HEADER]
    assert answered(hub, second["ticket"], 1) == ["run"]
    assert claims._posted(first["ticket"], 1) is None  # its child will claim for itself


def test_the_record_kombu_restores_from_holds_the_message_as_delivered_without_its_ticket(
        taking: Any) -> None:
    r, take = taking
    message = attempt(21)
    issue(r, message)
    taken = take(message)
    assert claims.HEADER in taken.headers
    stored = json.loads(r.hget(taken.channel.unacked_key, taken.delivery_tag))
    assert claims.HEADER not in stored[0]["headers"]  # a redelivery brings no old verdicts


def test_a_child_that_claims_for_itself_gets_each_attempts_verdict_in_one_call(taking: Any) -> None:
    r, _ = taking
    issued, superseded, unissued = attempt(1), attempt(2), attempt(3)
    issue(r, issued)
    issue(r, superseded)
    with r.pipeline() as pipe:
        fence.supersede(pipe, CLUSTER, superseded["attempt_id"])
        pipe.execute()
    runner.Process.redis, runner.Process.claim = r, None
    try:
        seen = runner.claim(CLUSTER, [issued, superseded, unissued], [])
    finally:
        runner.Process.redis = runner.Process.claim = None
    assert seen == ["run", "superseded", "forged"]
    assert r.get(fence.key(CLUSTER, issued["attempt_id"])) == fence.started_by(os.getpid())
    assert r.get(fence.key(CLUSTER, unissued["attempt_id"])) is None
