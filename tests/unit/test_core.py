"""The scheduler state machine, driven directly: no etcd, no broker."""

from __future__ import annotations

from corral.scheduler.core import Core
from corral.scheduler.ingress import Rejection, Submission
from corral.scheduler.records import read_retired

from .harness import ONE_NODE, make, move_finished, policy


def core_with_nodes(nodes=ONE_NODE) -> Core:
    return make(nodes)


def submit(core: Core, task_id: str, session: str = "s") -> None:
    core.submit(Submission(task_id, "corral.echo", {"id": task_id}, session), 1.0, ack=task_id)


def status(core: Core, task_id: str, kind: str, **extra: object) -> None:
    attempt = core.tasks[task_id].current_attempt
    core.status({"kind": kind, "task_id": task_id, "attempt_id": attempt, "time": 2.0, **extra},
                2.0, ack=None)


def test_a_submission_is_written_and_acked_in_the_same_batch() -> None:
    core = core_with_nodes()
    submit(core, "t1")
    fx = core.take_effects()
    assert "t1" in fx.tasks
    assert fx.acks == ["t1"]
    assert core.tasks["t1"].state == "PENDING"


def test_routing_dispatches_an_attempt_and_publishes_to_the_gpu_queue() -> None:
    core = core_with_nodes()
    submit(core, "t1")
    core.route(1.5)
    fx = core.take_effects()
    (pub,) = fx.dispatches
    task = core.tasks["t1"]
    assert task.state == "QUEUED"
    assert pub.gpu == ("node-1", task.attempts[0].gpu)
    assert pub.message["attempt_id"] == task.current_attempt


def test_a_gpu_never_has_more_than_two_outstanding() -> None:
    core = core_with_nodes()
    for i in range(10):
        submit(core, f"t{i}")
    core.route(1.5)
    assert len(core.take_effects().dispatches) == 4
    assert sum(len(q) for q in core.pending.values()) == 6


def test_a_task_submitted_just_after_another_takes_an_idle_gpu_not_the_slot_behind_it() -> None:
    core = core_with_nodes()
    submit(core, "t1")
    core.route(1.5)
    submit(core, "t2")
    core.route(1.51)  # within the allocator's interval: it runs anyway, a GPU being idle
    assert core.tasks["t1"].attempts[0].gpu != core.tasks["t2"].attempts[0].gpu


def test_success_records_the_result_and_frees_the_slot() -> None:
    core = core_with_nodes()
    for i in range(5):
        submit(core, f"t{i}")
    core.route(1.5)
    status(core, "t0", "started")
    status(core, "t0", "succeeded", result_ref="r0")
    task = core.tasks["t0"]
    assert task.state == "SUCCEEDED" and task.result_ref == "r0"
    assert task.attempts[0].state == "SUCCEEDED"
    core.route(3.0)
    assert core.tasks["t4"].state == "QUEUED"


def test_a_failure_is_recorded_with_its_error() -> None:
    core = core_with_nodes()
    core.submit(Submission("t1", "corral.echo", {}, "s", retry={"local": 0, "hosts": 1}), 1.0, None)
    core.route(1.5)
    status(core, "t1", "failed", error={"type": "ValueError", "message": "bad"})
    assert core.tasks["t1"].state == "FAILED"
    assert core.tasks["t1"].attempts[0].error["type"] == "ValueError"
    assert "budget" in core.tasks["t1"].reason


def test_a_duplicate_task_id_creates_one_task() -> None:
    core = core_with_nodes()
    submit(core, "t1")
    submit(core, "t1")
    assert len(core.tasks) == 1
    assert core.take_effects().acks == ["t1", "t1"]


def test_a_rejection_is_recorded_with_its_reason() -> None:
    core = core_with_nodes()
    core.submit(Rejection("bad", "unknown algorithm 'x'"), 1.0, ack="m")
    assert core.tasks["bad"].state == "REJECTED"
    assert core.tasks["bad"].reason == "unknown algorithm 'x'"


def test_status_of_a_superseded_attempt_is_ignored() -> None:
    core = core_with_nodes()
    submit(core, "t1")
    core.route(1.5)
    old = core.tasks["t1"].current_attempt
    core.nodes_changed({}, 2.0)  # node lost: attempt superseded, task pending again
    core.status({"kind": "succeeded", "task_id": "t1", "attempt_id": old, "result_ref": "x"},
                3.0, ack=None)
    task = core.tasks["t1"]
    assert task.state == "PENDING"
    assert task.attempts[0].state == "SUPERSEDED"
    assert task.result_ref is None


def test_tasks_of_a_lost_node_return_to_their_queue_in_submit_order() -> None:
    core = core_with_nodes()
    for i in range(6):
        submit(core, f"t{i}")
    core.route(1.5)
    core.nodes_changed({}, 2.0)
    assert list(core.pending["s"]) == [f"t{i}" for i in range(6)]


def test_load_rebuilds_pending_queues_and_outstanding_slots_from_records() -> None:
    core = core_with_nodes()
    for i in range(6):
        submit(core, f"t{i}")
    core.route(1.5)
    status(core, "t0", "started")
    records = [t.to_dict() for t in core.tasks.values()]

    fresh = Core(policy())
    fresh.load(records, {})
    fresh.nodes_changed(ONE_NODE, 2.0)
    assert list(fresh.pending["s"]) == ["t4", "t5"]
    assert sum(len(g.outstanding) for g in fresh.gpus.values()) == 4
    assert fresh.tasks["t0"].state == "RUNNING"
    assert fresh.seq == 6


def test_load_supersedes_attempts_on_gpus_that_are_gone() -> None:
    core = core_with_nodes()
    submit(core, "t1")
    core.route(1.5)
    records = [t.to_dict() for t in core.tasks.values()]
    fresh = Core(policy())
    fresh.load(records, {})
    fresh.nodes_changed({}, 2.0)
    assert fresh.tasks["t1"].state == "PENDING"
    assert fresh.tasks["t1"].attempts[0].state == "SUPERSEDED"


def test_counts_follow_every_transition() -> None:
    core = core_with_nodes()
    for i in range(3):
        submit(core, f"t{i}")
    core.route(1.5)
    status(core, "t0", "started")
    status(core, "t0", "succeeded", result_ref="r")
    summary = core.summary()["tasks"]
    assert summary["succeeded"] == 1 and summary["queued"] == 2 and summary["pending"] == 0


def test_tasks_submitted_before_any_gpu_is_known_are_routed_once_gpus_join() -> None:
    core = Core(policy(allocate_every=0.0))
    submit(core, "t1")
    core.route(1.0)
    assert core.tasks["t1"].state == "PENDING"
    core.nodes_changed(ONE_NODE, 1.5)
    core.route(2.0)
    assert core.tasks["t1"].state == "QUEUED"


def test_a_finished_record_not_yet_in_history_outlives_the_dedup_window() -> None:
    core = Core(policy(dedup_window=100.0))
    core.nodes_changed(ONE_NODE, 0.0)
    submit(core, "done")
    submit(core, "waiting")
    core.route(1.5)
    status(core, "done", "started")
    status(core, "done", "succeeded", result_ref="r")
    core.take_effects()
    assert core.compact(200.0) == 0  # the history store never took it: it stays, known
    fx = core.take_effects()
    assert "done" not in fx.tasks and "done" in core.archiving and core.known("done")
    assert "waiting" in core.tasks
    assert core.summary()["tasks"]["succeeded"] == 1


def test_a_finished_task_is_retired_within_seconds_and_its_id_still_refused() -> None:
    core = core_with_nodes()
    submit(core, "t")
    core.route(1.0)
    status(core, "t", "started")
    status(core, "t", "succeeded", result_ref="r")
    core.tick(2.5)
    assert "t" in core.tasks  # whole for a moment: a waiting client sees the record end
    core.tick(10.0)
    assert "t" not in core.tasks and read_retired(core.retired["t"]).state == "SUCCEEDED"
    core.take_effects()
    submit(core, "t")
    assert "t" not in core.tasks and core.take_effects().tasks == {}
    assert core.summary()["tasks"]["succeeded"] == 1


def test_a_new_leader_keeps_finished_tasks_retired_and_deletes_them_on_time() -> None:
    core = Core(policy(dedup_window=100.0))
    core.nodes_changed(ONE_NODE, 0.0)
    submit(core, "done")
    core.route(1.5)
    status(core, "done", "started")
    status(core, "done", "succeeded", result_ref="r")
    records = [t.to_dict() for t in core.take_effects().tasks.values()]
    fresh = Core(policy(dedup_window=100.0))
    fresh.load(records, {}, now=10.0)
    assert "done" not in fresh.tasks and "done" in fresh.retired
    assert fresh.summary()["tasks"]["succeeded"] == 1
    assert list(fresh.archiving) == ["done"]  # its record is still in etcd: moved again
    move_finished(fresh, 10.0)
    assert fresh.compact(50.0) == 0 and fresh.compact(200.0) == 1
    assert fresh.take_effects().unfences == ["done.a1"]
