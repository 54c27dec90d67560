"""Adaptive batching (M11): several short tasks per GPU message, each with its own outcome."""

from __future__ import annotations

from collections import deque

from corral.scheduler.core import Core
from corral.scheduler.ingress import Submission
from corral.scheduler.placement import assign_grouped
from corral.scheduler.records import Task

from .harness import ONE_NODE, make
from .harness import policy as policy_of


def core_with(**policy: object) -> Core:
    return make(ONE_NODE, **policy)


def submit(core: Core, n: int, prefix: str = "t") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for task_id in ids:
        core.submit(Submission(task_id, "corral.echo", {}, "s"), 1.0, ack=None)
    return ids


def report(core: Core, task_id: str, kind: str, at: float) -> None:
    attempt = core.tasks[task_id].current_attempt
    core.status({"kind": kind, "task_id": task_id, "attempt_id": attempt, "node": "node-1",
                 "gpu": core.tasks[task_id].attempts[-1].gpu, "time": at}, at, ack=None)


def run_one(core: Core, task_id: str, seconds: float) -> None:
    report(core, task_id, "started", 2.0)
    report(core, task_id, "succeeded", 2.0 + seconds)


def measured_core(seconds: float = 0.001, **policy: object) -> Core:
    """A core that has seen corral.echo take `seconds`."""
    core = core_with(**policy)
    (first,) = submit(core, 1, "warm")
    core.route(1.5)
    run_one(core, first, seconds)
    core.take_effects()
    return core


def test_nothing_is_batched_before_a_run_time_is_known() -> None:
    core = core_with()
    submit(core, 20)
    core.route(1.5)
    fx = core.take_effects()
    assert len(fx.dispatches) == 4 and all("batch" not in p.message for p in fx.dispatches)


def test_short_tasks_with_a_backlog_travel_several_to_a_message() -> None:
    core = measured_core()
    submit(core, 100)
    core.route(3.0)
    fx = core.take_effects()
    assert len(fx.dispatches) == 4  # still at most `depth` messages per GPU
    sizes = [len(p.message["batch"]) for p in fx.dispatches]
    assert sum(sizes) == 100 and max(sizes) <= 32
    for pub in fx.dispatches:
        for msg in pub.message["batch"]:
            assert core.tasks[msg["task_id"]].state == "QUEUED"
            assert core.tasks[msg["task_id"]].current_attempt == msg["attempt_id"]


def test_batching_never_leaves_a_gpu_idle_while_tasks_wait() -> None:
    core = measured_core()
    submit(core, 3)
    core.route(3.0)
    fx = core.take_effects()
    assert len(fx.dispatches) == 3  # 3 tasks, 4 free slots: one each, no batch


def test_long_tasks_are_not_batched() -> None:
    core = measured_core(2.0)
    submit(core, 50)
    core.route(5.0)
    assert all("batch" not in p.message for p in core.take_effects().dispatches)


def test_batch_max_one_turns_batching_off() -> None:
    core = measured_core(batch_max=1)
    submit(core, 50)
    core.route(3.0)
    assert all("batch" not in p.message for p in core.take_effects().dispatches)


def test_a_batch_holds_its_slot_until_its_last_member_ends() -> None:
    core = measured_core()
    ids = submit(core, 8)
    core.route(3.0)
    pub = core.take_effects().dispatches[0]
    members = [m["task_id"] for m in pub.message["batch"]]
    key = ("node-1", pub.message["gpu"])
    before = core.busy[key]
    for task_id in members[:-1]:
        run_one(core, task_id, 0.001)
    assert core.busy[key] == before
    run_one(core, members[-1], 0.001)
    assert core.busy.get(key, 0) == before - 1
    assert all(core.tasks[t].state == "SUCCEEDED" for t in members)
    assert set(members) <= set(ids)


def test_each_member_of_a_batch_keeps_its_own_outcome() -> None:
    core = measured_core()
    submit(core, 20)
    core.route(3.0)
    members = [m["task_id"] for m in core.take_effects().dispatches[0].message["batch"]]
    run_one(core, members[0], 0.001)
    report(core, members[1], "started", 2.0)
    core.status({"kind": "failed", "task_id": members[1], "node": "node-1",
                 "attempt_id": core.tasks[members[1]].current_attempt,
                 "gpu": core.tasks[members[1]].attempts[-1].gpu, "time": 2.1,
                 "error": {"type": "ValueError", "message": "bad input"}}, 2.1, ack=None)
    assert core.tasks[members[0]].state == "SUCCEEDED"
    assert core.tasks[members[1]].state in ("PENDING", "QUEUED")  # retried on its own
    assert core.tasks[members[2]].state == "QUEUED"


def test_a_new_leader_counts_a_batch_as_one_message() -> None:
    core = measured_core()
    submit(core, 40)
    core.route(3.0)
    core.take_effects()
    records = [t.to_dict() for t in core.tasks.values()]
    fresh = Core(policy_of())
    fresh.load(records, dict(core.sessions))
    fresh.nodes_changed(ONE_NODE, 4.0)
    assert fresh.busy == core.busy
    assert fresh.bundle_left == core.bundle_left


def test_placement_spreads_a_backlog_evenly_over_free_slots() -> None:
    load = {("n", 0): 0, ("n", 1): 1}
    got = assign_grouped({"s": deque(f"t{i}" for i in range(30))}, load, {"s": list(load)}, 2,
                         batch={"s": 16})
    assert sum(len(ids) for ids, _ in got) == 30
    assert [len(ids) for ids, _ in got] == [10, 10, 10]
    assert load == {("n", 0): 2, ("n", 1): 2}


def test_a_suspect_gpu_gets_one_task_per_message() -> None:
    core = measured_core()
    (bad,) = submit(core, 1, "bad")
    core.route(2.5)
    gpu = core.tasks[bad].attempts[-1].gpu
    report(core, bad, "started", 2.6)
    core.status({"kind": "failed", "task_id": bad, "attempt_id": core.tasks[bad].current_attempt,
                 "node": "node-1", "gpu": gpu, "time": 2.7,
                 "error": {"type": "RuntimeError", "message": "CUDA error: an illegal memory access"}},
                2.7, ack=None)
    assert ("node-1", gpu) in core.suspect
    core.take_effects()
    submit(core, 100)
    core.route(3.0)
    on_suspect = [p for p in core.take_effects().dispatches if p.message["gpu"] == gpu]
    assert on_suspect and all("batch" not in p.message for p in on_suspect)


def test_a_deep_backlog_travels_in_messages_of_up_to_the_backlog_seconds() -> None:
    core = measured_core(0.01)  # 0.05 s of work is 5 tasks; 0.25 s is 25
    submit(core, 200)
    core.route(3.0)
    sizes = [len(p.message["batch"]) for p in core.take_effects().dispatches]
    assert sizes == [25, 25, 25, 25]  # 2 GPUs, 2 messages each


def test_a_backlog_that_fills_every_slot_once_keeps_messages_at_the_batch_seconds() -> None:
    core = measured_core(0.01)
    submit(core, 20)
    core.route(3.0)
    sizes = [len(p.message["batch"]) for p in core.take_effects().dispatches]
    assert sizes == [5, 5, 5, 5]


def second_member_succeeds(began: float) -> Task:
    """The second member of a batch reports `succeeded` at 3.2, its `started` left out."""
    core = measured_core()
    submit(core, 20)
    core.route(3.0)
    members = [m["task_id"] for m in core.take_effects().dispatches[0].message["batch"]]
    task = core.tasks[members[1]]
    core.status({"kind": "succeeded", "task_id": task.id, "attempt_id": task.current_attempt,
                 "node": "node-1", "gpu": task.attempts[-1].gpu, "time": 3.2, "began": began,
                 "ran": 0.1, "result_ref": "r"}, 3.3, ack=None)
    return task


def test_an_outcome_whose_started_was_left_out_starts_the_attempt_when_it_began() -> None:
    task = second_member_succeeds(began=3.1)
    assert task.state == "SUCCEEDED"
    assert (task.attempts[-1].started, task.attempts[-1].ended) == (3.1, 3.2)


def test_a_began_after_the_outcome_is_not_believed() -> None:
    task = second_member_succeeds(began=9.0)
    assert task.state == "SUCCEEDED" and task.attempts[-1].started == 3.2


def test_a_began_that_is_not_a_finite_time_is_not_believed() -> None:
    for began in (float("nan"), float("inf"), float("-inf")):
        task = second_member_succeeds(began=began)
        assert task.state == "SUCCEEDED" and task.attempts[-1].started == 3.2
