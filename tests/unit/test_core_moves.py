"""Planned stops in the state machine: cancel, migrate, drain, and attempts that yield."""

from __future__ import annotations

import pytest

from corral.scheduler.core import Core
from corral.scheduler.ingress import AdminRequest

from .harness import TWO_NODES, make, report, running, sent, submit


def admin(core: Core, action: str, tid: str = "", node: str = "", move: bool = True) -> None:
    core.submit(AdminRequest(action, node, reason="test", task_id=tid or None, move=move), 2.0, None)


def test_cancelling_a_queued_task_takes_it_out_of_its_queue() -> None:
    core = make(TWO_NODES, depth=1)
    for i in range(6):
        submit(core, f"t{i}")
    core.route(1.0)
    admin(core, "task.cancel", "t5")
    core.route(2.1)
    assert core.tasks["t5"].state == "CANCELLED" and "t5" not in core.pending.get("s", ())


def test_cancelling_a_running_task_fences_its_attempt_and_frees_its_gpu() -> None:
    core = make()
    key = running(core, "t")
    core.take_effects()
    admin(core, "task.cancel", "t")
    fx = core.take_effects()
    assert core.tasks["t"].state == "CANCELLED" and fx.fences == ["t.a1"]
    assert not core.gpus[key].outstanding
    report(core, "t", "succeeded", now=3.0)  # too late: ignored
    assert core.tasks["t"].state == "CANCELLED"


def test_migrating_a_running_task_asks_it_to_stop_then_runs_it_on_another_host() -> None:
    core = make(move_grace=7.0)
    node, _ = running(core, "t")
    core.take_effects()
    admin(core, "task.migrate", "t")
    assert core.take_effects().stops == [("t.a1", 7.0)]
    report(core, "t", "checkpoint", now=2.5, checkpoint_ref="ref-1")
    report(core, "t", "yielded", now=3.0, reason="asked to stop")
    core.route(3.1)
    (message,) = sent(core.take_effects())
    assert message["attempt_id"] == "t.a2" and message["node"] != node and message["checkpoint"] == "ref-1"
    assert core.tasks["t"].attempts[0].state == "SUPERSEDED"
    assert core.tasks["t"].attempts[0].error["type"] == "Yielded"


def test_draining_a_node_asks_its_running_attempts_to_stop() -> None:
    core = make()
    node, _ = running(core, "t")
    core.take_effects()
    admin(core, "node.drain", node=node)
    assert core.take_effects().stops == [("t.a1", core.policy.move_grace)]


def test_a_drain_that_lets_work_finish_asks_nothing_to_stop() -> None:
    core = make()
    node, _ = running(core, "t")
    core.take_effects()
    admin(core, "node.drain", node=node, move=False)
    assert core.take_effects().stops == []


def test_an_attempt_that_yields_runs_again_without_spending_its_retry_budget() -> None:
    core = make()
    running(core, "t", local=0, hosts=0)
    core.take_effects()
    for n in range(2, 5):  # a job that exits with its checkpoint code, again and again
        report(core, "t", "yielded", now=float(n), reason="exit code 85")
        core.route(float(n))
        (message,) = sent(core.take_effects())
        assert message["attempt_id"] == f"t.a{n}"
        report(core, "t", "started", now=n + 0.5)
    report(core, "t", "succeeded", now=9.0)
    assert core.tasks["t"].state == "SUCCEEDED"


def test_cancelling_a_waiting_gang_gives_its_reserved_gpus_back() -> None:
    from corral.scheduler.ingress import Submission
    core = make()
    running(core, "t")
    core.submit(Submission("g", "a", {}, "s", 2), 1.5, None)
    core.route(1.6)
    assert core.reserved
    admin(core, "task.cancel", "g")
    core.route(2.1)
    assert core.tasks["g"].state == "CANCELLED" and core.reserved == {}


def test_a_yield_from_an_attempt_that_is_no_longer_current_is_ignored() -> None:
    core = make()
    running(core, "t")
    report(core, "t", "failed", now=2.0, error={"type": "ValueError", "message": "x"})
    core.status({"kind": "yielded", "task_id": "t", "attempt_id": "t.a1", "time": 2.1, "reason": ["odd"]},
                2.1, None)
    assert core.tasks["t"].attempts[0].state == "FAILED"


def test_a_cancel_or_migrate_of_an_unknown_or_finished_task_changes_nothing() -> None:
    core = make()
    running(core, "t")
    report(core, "t", "succeeded", now=2.0)
    core.take_effects()
    admin(core, "task.cancel", "t")
    admin(core, "task.migrate", "nobody")
    fx = core.take_effects()
    assert core.tasks["t"].state == "SUCCEEDED" and not fx.fences and not fx.stops


@pytest.mark.parametrize("ran", [float("nan"), float("inf"), -1.0, "0.1", None, 10**9])
def test_a_time_per_input_that_makes_no_sense_falls_back_to_the_attempts_own(ran: object) -> None:
    core = make()
    running(core, "t")
    report(core, "t", "succeeded", now=2.2, ran=ran)
    assert abs(core.runtime["a"] - 1.0) < 1e-9  # started at 1.2, ended at 2.2
