"""Checkpoints (M2) in the state machine: recorded from the current attempt, resumed from,
asked for periodically."""

from __future__ import annotations

from corral.scheduler.core import Core
from corral.scheduler.ingress import Submission

from .harness import make, report

APP = {"type": "ValueError", "message": "bad input"}




def started(core: Core, tid: str = "t", local: int = 0, hosts: int = 3) -> None:
    core.submit(Submission(tid, "a", {}, "s", retry={"local": local, "hosts": hosts}), 1.0, None)
    core.route(1.0)
    report(core, tid, "started", now=1.5)


def test_a_checkpoint_of_the_current_attempt_is_recorded_in_the_task() -> None:
    core = make()
    started(core)
    report(core, "t", "checkpoint", now=2.0, checkpoint_ref="ref-1")
    assert core.tasks["t"].checkpoint_ref == "ref-1"
    assert core.tasks["t"].to_dict()["checkpoint_ref"] == "ref-1"


def test_the_next_attempt_after_a_failure_starts_from_the_latest_checkpoint() -> None:
    core = make()
    started(core)
    report(core, "t", "checkpoint", now=2.0, checkpoint_ref="ref-1")
    core.take_effects()
    report(core, "t", "checkpoint", now=2.5, checkpoint_ref="ref-2")
    fx = core.take_effects()
    assert fx.stale_checkpoints == ["ref-1"] and fx.tasks["t"].checkpoint_ref == "ref-2"
    report(core, "t", "failed", now=3.0, error=APP)
    core.route(3.1)
    (pub,) = core.take_effects().dispatches
    assert pub.message["attempt_id"] == "t.a2" and pub.message["checkpoint"] == "ref-2"


def test_a_checkpoint_of_a_superseded_attempt_is_ignored() -> None:
    core = make()
    started(core)
    old = core.tasks["t"].current_attempt
    report(core, "t", "failed", now=2.0, error=APP)
    core.route(2.1)
    core.status({"kind": "checkpoint", "task_id": "t", "attempt_id": old, "time": 2.2,
                 "checkpoint_ref": "late"}, 2.2, None)
    assert core.tasks["t"].checkpoint_ref is None


def test_running_tasks_are_asked_for_a_checkpoint_every_interval_and_finished_ones_are_not() -> None:
    core = make(checkpoint_every=10.0, heartbeat_timeout=1000.0)
    started(core, "a")
    started(core, "b")
    core.take_effects()
    core.tick(5.0)
    assert core.take_effects().checkpoint_requests == []
    report(core, "b", "succeeded", now=6.0, result_ref="r")
    core.tick(12.0)
    assert core.take_effects().checkpoint_requests == ["a"]
    core.tick(13.0)
    assert core.take_effects().checkpoint_requests == []
    core.tick(22.5)
    assert core.take_effects().checkpoint_requests == ["a"]


def test_a_checkpoint_saved_on_its_own_postpones_the_next_request() -> None:
    core = make(checkpoint_every=10.0, heartbeat_timeout=1000.0)
    started(core)
    report(core, "t", "checkpoint", now=9.0, checkpoint_ref="ref-1")
    core.take_effects()
    core.tick(12.0)
    assert core.take_effects().checkpoint_requests == []
    core.tick(19.5)
    assert core.take_effects().checkpoint_requests == ["t"]
