"""Tasks that wait for others (M9): the leader drives a pipeline's DAG itself."""

from __future__ import annotations

from corral.scheduler.core import Core
from corral.scheduler.ingress import Submission
from corral.scheduler.records import Task

from .harness import TWO_NODES, make, policy, report

APP = {"type": "ValueError", "message": "bad input"}




def submit(core: Core, tid: str, after: dict[str, str] | None = None, local: int = 0,
           hosts: int = 0) -> None:
    core.submit(Submission(tid, "a", {}, "s", retry={"local": local, "hosts": hosts}, after=after),
                1.0, None)


def succeed(core: Core, tid: str, now: float = 2.0) -> None:
    core.route(now)
    report(core, tid, "started", now=now)
    report(core, tid, "succeeded", now=now, result_ref=f"ref-{tid}")


def test_a_task_waits_unqueued_until_its_upstream_succeeds() -> None:
    core = make()
    submit(core, "up")
    submit(core, "down", after={"frames": "up"})
    core.route(1.0)
    assert core.tasks["down"].state == "PENDING"
    assert core.tasks["down"].attempts == []
    assert list(core.pending.get("s", ())) == []


def test_when_its_upstream_succeeds_the_task_is_routed_with_the_upstream_attempt_as_input() -> None:
    core = make()
    submit(core, "up")
    submit(core, "down", after={"frames": "up"})
    succeed(core, "up")
    core.take_effects()
    core.tick(3.0)
    fx = core.take_effects()
    (message,) = [p.message for p in fx.dispatches if p.message.get("task_id") == "down"]
    assert message["inputs"] == {"frames": ["up", "up.a1"]}
    assert core.tasks["down"].state == "QUEUED"
    assert [e["event"] for e in core.tasks["down"].events][:2] == ["submitted", "ready"]


def test_a_task_waits_for_all_of_its_upstream_tasks() -> None:
    core = make()
    submit(core, "a")
    submit(core, "b")
    submit(core, "join", after={"left": "a", "right": "b"})
    core.route(1.0)
    report(core, "a", "started")
    report(core, "a", "succeeded", result_ref="x")
    core.tick(3.0)
    assert core.tasks["join"].attempts == []
    report(core, "b", "started", now=3.5)
    report(core, "b", "succeeded", now=3.5, result_ref="y")
    core.tick(4.0)
    assert core.tasks["join"].inputs == {"left": ["a", "a.a1"], "right": ["b", "b.a1"]}
    assert core.tasks["join"].state == "QUEUED"


def test_a_failed_upstream_cancels_its_dependents_down_the_whole_dag_with_the_reason() -> None:
    core = make()
    submit(core, "up")
    submit(core, "mid", after={"x": "up"})
    submit(core, "leaf", after={"y": "mid"})
    core.route(1.0)
    report(core, "up", "started")
    report(core, "up", "failed", error=APP)
    core.tick(3.0)
    assert core.tasks["up"].state == "FAILED"
    assert core.tasks["mid"].state == "CANCELLED"
    assert "upstream task up (x) ended FAILED" in core.tasks["mid"].reason
    assert core.tasks["leaf"].state == "CANCELLED"
    assert "mid" in core.tasks["leaf"].reason


def test_an_upstream_that_already_succeeded_long_ago_still_feeds_its_dependent() -> None:
    core = make()
    submit(core, "up")
    succeed(core, "up")
    core.forget("up")  # retired: only its summary is left in memory
    submit(core, "down", after={"x": "up"})
    assert core.tasks["down"].inputs == {"x": ["up", "up.a1"]}
    assert list(core.pending["s"]) == ["down"]


def test_naming_an_unknown_upstream_task_rejects_the_submission_with_a_reason() -> None:
    core = make()
    submit(core, "down", after={"x": "nobody"})
    assert core.tasks["down"].state == "REJECTED"
    assert "unknown task(s) nobody" in core.tasks["down"].reason


def test_a_new_leader_rebuilds_waiting_tasks_from_their_records() -> None:
    core = make()
    submit(core, "up")
    submit(core, "down", after={"x": "up"})
    records = [t.to_dict() for t in core.tasks.values()]
    heir = Core(policy())
    heir.load(records, dict(core.sessions), now=5.0)
    heir.nodes_changed(TWO_NODES, 5.0)
    assert list(heir.pending["s"]) == ["up"]
    assert heir.waiting == {"up": {"down"}}
    assert Task.from_dict(records[1]).after == {"x": "up"}


def test_a_new_leader_queues_a_waiting_task_whose_upstream_succeeded_before_the_takeover() -> None:
    core = make()
    submit(core, "up")
    submit(core, "down", after={"x": "up"})
    succeed(core, "up")
    records = [t.to_dict() for t in core.tasks.values()]
    records[1]["inputs"] = {}  # written before the upstream's outcome
    heir = Core(policy())
    heir.load(records, dict(core.sessions), now=5.0)
    assert list(heir.pending["s"]) == ["down"]
    assert heir.tasks["down"].inputs == {"x": ["up", "up.a1"]}


def test_a_dependent_cancelled_by_one_upstream_and_retired_is_skipped_when_the_other_ends() -> None:
    core = make()
    submit(core, "a")
    submit(core, "b")
    submit(core, "join", after={"left": "a", "right": "b"})
    core.route(1.0)
    report(core, "a", "started")
    report(core, "a", "failed", error=APP)
    core.tick(3.0)
    assert core.tasks["join"].state == "CANCELLED"
    core.forget("join")
    report(core, "b", "started", now=4.0)
    report(core, "b", "succeeded", now=4.0, result_ref="y")
    core.tick(5.0)
    assert core.waiting == {}
