"""Backpressure before any store is full: new work refused with a reason, admitted work
flowing, the door open again once the backlog drains."""

from __future__ import annotations

from .harness import make, report, sent, submit


def test_past_the_live_task_mark_new_work_is_refused_with_a_reason_and_taken_again_once_drained() -> None:
    core = make(max_live=3)
    for i in range(3):
        submit(core, f"in{i}")
    submit(core, "out")
    assert core.tasks["out"].state == "REJECTED" and "3 unfinished tasks" in core.tasks["out"].reason
    assert core.summary()["admission"]["open"] is False
    core.route(1.0)
    assert len(sent(core.take_effects())) == 3  # admitted work keeps flowing
    for i in range(3):
        report(core, f"in{i}", "started", now=1.5)
        report(core, f"in{i}", "succeeded", now=1.6, result_ref="r")
    submit(core, "later", now=2.0)
    assert core.tasks["later"].state == "PENDING" and core.summary()["admission"]["open"] is True


def test_past_etcds_high_water_mark_new_work_is_refused() -> None:
    core = make(etcd_high_water=1000)
    core.storage(1500)
    submit(core, "t")
    assert core.tasks["t"].state == "REJECTED" and "etcd's database is 1500 bytes" in core.tasks["t"].reason
    core.storage(100)
    submit(core, "u")
    assert core.tasks["u"].state == "PENDING"
