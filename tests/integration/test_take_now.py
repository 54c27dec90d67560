"""What a reader reads while the loop is idle (a message that ends the ingress reader's idle
wait, new entries of the status stream) is applied on the reader's own thread
(Scheduler.take_now): one state machine still, one turn at a time, in the order its inputs
came."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from corral.base.keys import INGRESS_QUEUE, STATUS_QUEUE
from corral.client import Client
from corral.scheduler.store import Fenced
from tests.integration.conftest import next_ingress, readers

pytestmark = pytest.mark.integration


def until(what: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


def ticks_of(scheduler: Any) -> list[str]:
    """The names of the threads the scheduler's ticks run on, from now on."""
    ticks: list[str] = []
    tick = scheduler._tick
    scheduler._tick = lambda: (ticks.append(threading.current_thread().name), tick())
    return ticks


def submit_durably(scheduler: Any) -> None:
    """Submit a task as a user does, and wait until its record is in etcd."""
    client = Client(scheduler.settings)
    try:
        handle = client.submit("corral.echo", {})
        until(lambda: client.task(handle.id))
    finally:
        client.close()


def waiting(broker: Any, command: str = "blmove") -> bool:
    """Whether a reader is in its idle wait (blocked in `command`), not between two reads."""
    return any(c["cmd"] == command and "b" in c["flags"] for c in broker.client_list())


def test_a_message_that_ends_an_idle_wait_is_made_durable_on_its_readers_thread(replica: Any) -> None:
    scheduler, broker = replica
    scheduler._apply(("leader", scheduler.election.campaign()))  # its writes must go through
    ticks = ticks_of(scheduler)
    scheduler._turn.release()  # the loop is idle
    until(lambda: waiting(broker))
    submit_durably(scheduler)
    assert ticks == ["corral-ingress"]
    assert scheduler.inbox.empty()


@pytest.mark.parametrize("hostile", [b"\xff\xfe not utf-8", b'{"body": NaN}\n', b"[" * 500 + b"]" * 500,
                                     b'"a string"', b"{}\n\n"])
def test_a_hostile_message_taken_on_the_readers_thread_is_acknowledged_and_the_next_one_taken(
        replica: Any, hostile: bytes) -> None:
    scheduler, broker = replica
    scheduler._apply(("leader", scheduler.election.campaign()))
    ticks = ticks_of(scheduler)
    scheduler._turn.release()
    until(lambda: waiting(broker))
    broker.lpush(INGRESS_QUEUE, hostile)
    assert scheduler.inbound is not None
    until(lambda: not broker.llen(scheduler.inbound.processing) and waiting(broker))  # acknowledged
    submit_durably(scheduler)
    assert scheduler.token is not None and scheduler.inbox.empty()
    assert set(ticks) == {"corral-ingress"}


def test_a_status_event_read_while_the_loop_is_idle_is_applied_on_its_readers_thread(replica: Any) -> None:
    scheduler, broker = replica
    scheduler._apply(("leader", scheduler.election.campaign()))
    ticks = ticks_of(scheduler)
    scheduler._turn.release()
    until(lambda: waiting(broker, "xreadgroup"))
    event = {"kind": "heartbeat", "task_id": "t", "attempt_id": "t.a1", "node": "n", "gpu": 0, "time": 1.0}
    broker.xadd(STATUS_QUEUE, {"e": json.dumps(event)})
    until(lambda: ticks)
    assert ticks == ["corral-status"]
    until(lambda: not broker.xpending(STATUS_QUEUE, "corral-leader")["pending"])  # acknowledged
    assert scheduler.inbox.empty()


def test_a_message_waits_in_the_inbox_while_the_loop_has_its_turn(replica: Any) -> None:
    scheduler, broker = replica  # the fixture holds the turn
    scheduler._apply(("leader", 10**9))
    broker.lpush(INGRESS_QUEUE, b"while the loop is busy")
    assert next_ingress(scheduler)[5] == b"while the loop is busy"


def test_a_message_is_not_taken_before_what_the_inbox_already_holds(replica: Any) -> None:
    scheduler, broker = replica
    scheduler._apply(("leader", 10**9))
    scheduler.inbox.put(("storage", 0))
    scheduler._turn.release()
    broker.lpush(INGRESS_QUEUE, b"after it")
    until(lambda: scheduler.inbox.qsize() == 2)
    assert scheduler.inbox.get_nowait() == ("storage", 0)
    assert next_ingress(scheduler)[5] == b"after it"


def test_a_message_is_not_taken_before_one_the_loop_holds_and_has_not_applied(replica: Any) -> None:
    scheduler, broker = replica  # the fixture holds the turn
    scheduler._apply(("leader", 10**9))
    broker.lpush(INGRESS_QUEUE, b"first")
    assert next_ingress(scheduler)[5] == b"first"  # the loop has it, and waits for its turn
    scheduler._turn.release()
    until(lambda: waiting(broker))
    broker.lpush(INGRESS_QUEUE, b"second")
    assert next_ingress(scheduler)[5] == b"second"  # behind the first, not ahead of it


def test_nothing_is_taken_while_group_commit_would_hold_the_round(replica: Any) -> None:
    scheduler, broker = replica
    scheduler._apply(("leader", 10**9))
    scheduler.core.hold = lambda: 0.008  # a backlog, and every GPU has a message to run
    scheduler._turn.release()
    until(lambda: waiting(broker))
    broker.lpush(INGRESS_QUEUE, b"in a burst")
    assert next_ingress(scheduler)[5] == b"in a burst"  # the loop's thread gathers it


def test_a_step_down_on_the_readers_thread_hands_its_message_back(replica: Any) -> None:
    scheduler, broker = replica
    before = len(readers())
    scheduler._apply(("leader", 10**9))

    def deposed() -> None:
        raise Fenced("leader token 1000000000 is no longer current")

    scheduler._tick = deposed
    scheduler._turn.release()
    until(lambda: waiting(broker))
    broker.lpush(INGRESS_QUEUE, b"read, never durable")
    until(lambda: scheduler.token is None)
    until(lambda: len(readers()) == before)  # the reader stopped itself
    assert broker.lrange(INGRESS_QUEUE, 0, -1) == [b"read, never durable"]
