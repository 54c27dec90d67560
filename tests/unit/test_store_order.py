"""The order of a tick's etcd writes: dispatches are published once the records they carry
are durable, without waiting for the records of a burst of new submissions."""

from __future__ import annotations

from corral.base.keys import Keys
from corral.scheduler.core.effects import Dispatch, Effects
from corral.scheduler.store import MAX_OPS, dispatch_first

KEYS = Keys("c")


def burst(n: int) -> dict[str, object]:
    return {KEYS.task(f"new{i}"): {"id": f"new{i}"} for i in range(n)}


def dispatching(*task_ids: str) -> Effects:
    return Effects(dispatches=[Dispatch(("n", 0), {"batch": [{"task_id": t, "attempt_id": f"{t}.a1"}
                                                              for t in task_ids]}, f"{task_ids[0]}.a1")])


def test_a_burst_too_big_for_one_transaction_is_written_after_the_records_dispatched() -> None:
    writes = {**burst(MAX_OPS), KEYS.task("d1"): {}, KEYS.task("d2"): {}, KEYS.plan("n", 0): {}}
    head, rest = dispatch_first(dispatching("d1", "d2"), KEYS, writes)
    assert set(head) == {KEYS.task("d1"), KEYS.task("d2"), KEYS.plan("n", 0)}
    assert set(rest) == set(burst(MAX_OPS))


def test_writes_that_fit_one_transaction_stay_one_piece() -> None:
    writes = {**burst(10), KEYS.task("d1"): {}}
    assert dispatch_first(dispatching("d1"), KEYS, writes) == ({}, writes)


def test_a_tick_that_also_supersedes_attempts_writes_everything_before_publishing() -> None:
    fx = dispatching("d1")
    fx.fences.append("old.a1")
    writes = {**burst(MAX_OPS), KEYS.task("d1"): {}}
    assert dispatch_first(fx, KEYS, writes) == ({}, writes)
