"""Fault handling in the state machine: retries, reassignment, quarantine, node loss."""

from __future__ import annotations

from corral.scheduler.core import Core
from corral.scheduler.ingress import AdminRequest
from corral.scheduler.node_health import NodePolicy

from .harness import APP, DEVICE, TWO_NODES, make, move_finished, policy, report, running, sent, submit, where


def test_a_local_retry_is_a_new_attempt_the_leader_sends_to_the_same_gpu_ahead_of_others() -> None:
    core = make()
    gpu = running(core)
    core.take_effects()
    report(core, "t", "failed", error=APP)
    fx = core.take_effects()
    (retry,) = fx.dispatches
    assert retry.id == core.tasks["t"].current_attempt == "t.a2"
    assert retry.gpu == gpu and retry.urgent


def test_a_local_retry_waits_out_its_backoff_in_the_leader_doubling_each_time() -> None:
    core = make()
    gpu = running(core, backoff=0.5)
    core.take_effects()
    report(core, "t", "failed", now=2.0, error=APP)
    assert core.tasks["t"].state == "PENDING"
    core.tick(2.4)
    assert sent(core.take_effects(), "t") == []
    core.tick(2.5)
    assert [m["attempt_id"] for m in sent(core.take_effects(), "t")] == ["t.a2"]
    assert where(core, "t") == gpu
    report(core, "t", "started", now=2.6)
    report(core, "t", "failed", now=3.0, error=APP)
    core.tick(3.9)
    assert sent(core.take_effects(), "t") == []
    core.tick(4.0)
    assert [m["attempt_id"] for m in sent(core.take_effects(), "t")] == ["t.a3"]


def test_a_retry_held_for_its_backoff_is_still_held_by_the_next_leader() -> None:
    core = make()
    gpu = running(core, backoff=5.0)
    report(core, "t", "failed", now=2.0, error=APP)
    fx = core.take_effects()
    records = [t.to_dict() for t in fx.tasks.values()]
    plan = {f"{node}/{index}": info for (node, index), info in fx.plans.items()}
    heir = Core(policy())
    heir.load(records, dict(core.sessions), now=3.0, plan=plan)
    heir.nodes_changed(TWO_NODES, 3.0)
    heir.tick(3.0)
    assert sent(heir.take_effects(), "t") == []
    heir.tick(7.0)
    assert [m["attempt_id"] for m in sent(heir.take_effects(), "t")] == ["t.a2"]
    assert where(heir, "t") == gpu


def test_a_gpu_message_carries_no_retry_budget_for_the_worker_to_spend() -> None:
    core = make()
    submit(core, "t")
    core.route(1.0)
    (message,) = sent(core.take_effects())
    assert "retry" not in message and "local_try" not in message


def test_after_local_retries_the_task_moves_to_another_host_at_high_priority() -> None:
    core = make()
    submit(core, "t", local=1)
    core.route(1.0)
    first = where(core, "t")
    report(core, "t", "failed", error=APP)
    assert where(core, "t") == first
    report(core, "t", "failed", error=APP)
    assert core.tasks["t"].state == "PENDING"
    core.take_effects()
    core.route(3.0)
    (retry,) = core.take_effects().dispatches
    assert where(core, "t")[0] != first[0]
    assert retry.urgent


def test_a_task_failing_everywhere_ends_failed_with_its_history() -> None:
    core = make()
    submit(core, "t", local=1, hosts=2)
    core.route(1.0)
    for _ in range(2):
        report(core, "t", "failed", error=APP)  # then retried here by the leader
        report(core, "t", "failed", error=APP)
        core.route(3.0)
    task = core.tasks["t"]
    assert task.state == "FAILED"
    assert len(task.attempts) == 4 and {a.node for a in task.attempts} == {"n1", "n2"}
    assert "budget" in task.reason


def test_a_device_fault_moves_the_task_off_the_gpu_at_once() -> None:
    core = make()
    submit(core, "t")
    core.route(1.0)
    bad = where(core, "t")
    report(core, "t", "failed", error=DEVICE)
    core.route(3.0)
    assert where(core, "t") != bad


def test_a_faulty_gpu_is_quarantined_after_k_device_faults_and_gets_no_more_work() -> None:
    core = make(quarantine_after=3)
    bad = ("n1", 0)
    for i in range(30):
        submit(core, f"t{i}")
    core.route(1.0)
    core.take_effects()
    failures = 0
    for step in range(40):
        for tid, task in core.tasks.items():
            if task.current_attempt and task.state in ("QUEUED", "RUNNING"):
                if where(core, tid) == bad:
                    report(core, tid, "failed", error=DEVICE)
                    failures += 1
                else:
                    report(core, tid, "succeeded", result_ref="r")
        core.route(3.0 + step)
    assert core.gpu_health[bad].state == "quarantined"
    assert failures <= 3
    assert all(t.state == "SUCCEEDED" for t in core.tasks.values())


def test_a_stream_of_failing_tasks_quarantines_no_gpu() -> None:
    core = make(quarantine_after=3)
    for i in range(12):
        submit(core, f"f{i}", local=0, hosts=4)
    for step in range(40):
        core.route(float(step))
        for tid, task in core.tasks.items():
            if task.state in ("QUEUED", "RUNNING"):
                report(core, tid, "failed", error=APP, now=float(step))
    assert all(t.state == "FAILED" for t in core.tasks.values())
    assert all(h.state != "quarantined" for h in core.gpu_health.values())


def test_quarantine_moves_the_gpus_outstanding_attempts_elsewhere() -> None:
    core = make()
    for i in range(8):
        submit(core, f"t{i}")
    core.route(1.0)
    key = ("n1", 0)
    on_it = set(core.gpus[key].outstanding)
    core.admin(AdminRequest("gpu.quarantine", "n1", 0, "test"), 2.0)
    assert core.gpus[key].outstanding == set()
    assert all(core.tasks[t].state == "PENDING" for t in on_it)
    core.admin(AdminRequest("gpu.release", "n1", 0), 3.0)
    assert core.gpu_health[key].state == "healthy"


def test_a_silent_running_attempt_counts_as_failed_worker_lost() -> None:
    core = make(heartbeat_timeout=10.0)
    submit(core, "t")
    core.route(1.0)
    report(core, "t", "started", now=2.0)
    core.tick(5.0)
    assert core.tasks["t"].state == "RUNNING"
    core.tick(13.0)
    first = core.tasks["t"].attempts[0]
    assert first.state == "FAILED" and first.error["type"] == "WorkerLost"
    assert core.tasks["t"].state == "QUEUED"  # retried locally by the scheduler


def test_node_loss_supersedes_without_spending_the_budget_and_rejoin_waits() -> None:
    core = Core(policy(nodes=NodePolicy(stable_after=10)))
    core.nodes_changed(TWO_NODES, 0.0)
    for i in range(8):
        submit(core, f"t{i}", local=0, hosts=1)
    core.route(1.0)
    on_n1 = [t for t in core.tasks if where(core, t)[0] == "n1"]
    core.nodes_changed({"n2": TWO_NODES["n2"]}, 2.0)
    assert core.node_health["n1"].state == "lost"
    assert all(core.tasks[t].attempts[-1].state == "SUPERSEDED" for t in on_n1)
    core.nodes_changed(TWO_NODES, 3.0)
    assert core.node_health["n1"].state == "rejoining"
    core.tick(5.0)
    assert all(where(core, t)[0] == "n2" for t in on_n1 if core.tasks[t].state == "QUEUED")
    core.tick(13.5)
    assert core.node_health["n1"].state == "up"


def test_drain_moves_queued_work_and_keeps_running_work() -> None:
    core = make()
    for i in range(8):
        submit(core, f"t{i}")
    core.route(1.0)
    running = [t for t in core.tasks if where(core, t)[0] == "n1"][:2]
    for t in running:
        report(core, t, "started")
    core.admin(AdminRequest("node.drain", "n1"), 2.0)
    assert all(core.tasks[t].state == "RUNNING" for t in running)
    n1_live = [t for t in core.tasks if core.tasks[t].live_attempt and where(core, t)[0] == "n1"]
    assert sorted(n1_live) == sorted(running)


def test_work_queued_on_a_silent_gpu_moves_after_the_heartbeat_timeout() -> None:
    core = make(heartbeat_timeout=10.0)
    for i in range(8):
        submit(core, f"t{i}")
    core.route(1.0)
    stuck = [t for t in core.tasks if where(core, t) == ("n1", 0)]
    for t in core.tasks:
        if t not in stuck:
            report(core, t, "started", now=2.0)
            report(core, t, "succeeded", now=2.5, result_ref="r")
    core.tick(12.0)
    assert all(core.tasks[t].attempts[0].state == "SUPERSEDED" for t in stuck)
    assert all(core.tasks[t].state in ("PENDING", "QUEUED") for t in stuck)


def test_a_gpu_that_reports_keeps_its_queued_work() -> None:
    core = make(heartbeat_timeout=10.0)
    submit(core, "t")
    core.route(1.0)
    node, gpu = where(core, "t")
    core.status({"kind": "heartbeat", "node": node, "gpu": gpu, "time": 9.0}, 9.0, None)
    core.tick(15.0)
    assert core.tasks["t"].attempts[0].state == "DISPATCHED"


def test_a_failure_on_a_drained_node_moves_the_task_instead_of_retrying_there() -> None:
    core = make()
    node, _ = running(core)
    core.admin(AdminRequest("node.drain", node), 1.5)  # running work finishes; no retry there
    report(core, "t", "failed", error=APP)
    core.route(3.0)
    assert where(core, "t")[0] != node


def test_a_late_outcome_of_an_attempt_superseded_by_a_node_loss_is_ignored() -> None:
    core = make()
    node, gpu = running(core)
    core.nodes_changed({n: v for n, v in TWO_NODES.items() if n != node}, 1.5)  # node lost
    core.take_effects()
    core.status({"kind": "failed", "task_id": "t", "attempt_id": "t.a1", "node": node, "gpu": gpu,
                 "time": 1.6, "error": APP}, 1.6, None)
    core.route(2.0)
    moved = core.tasks["t"].current_attempt
    assert moved == "t.a2" and where(core, "t")[0] != node
    core.status({"kind": "succeeded", "task_id": "t", "attempt_id": "t.a1", "node": node,
                 "gpu": gpu, "time": 2.1, "result_ref": "from-the-lost-node"}, 2.1, None)
    assert core.tasks["t"].state != "SUCCEEDED" and core.tasks["t"].current_attempt == moved


def test_a_silent_worker_loses_its_task_to_another_gpu_after_one_timeout() -> None:
    core = make(heartbeat_timeout=10.0)
    silent = running(core)
    core.take_effects()
    core.tick(11.5)  # 10.3 s without a heartbeat
    core.tick(11.6)
    assert core.tasks["t"].attempts[0].error["type"] == "WorkerLost"
    assert where(core, "t") != silent and core.tasks["t"].state == "QUEUED"


def test_a_deleted_record_takes_its_fences_with_it_so_the_id_can_be_used_again() -> None:
    core = make(dedup_window=100.0)
    node, _ = running(core)
    core.admin(AdminRequest("node.drain", node), 1.5)
    report(core, "t", "failed", now=1.6, error=APP)  # moves: no retry on a drained node
    core.route(2.0)
    report(core, "t", "started", now=2.1)
    report(core, "t", "succeeded", now=2.2, result_ref="r")
    move_finished(core, 10.0)
    core.take_effects()
    assert core.compact(300.0) == 1
    assert sorted(core.take_effects().unfences) == ["t.a1", "t.a2"]
    submit(core, "t")  # the same id, a new task
    core.route(301.0)
    assert core.tasks["t"].current_attempt == "t.a1"


def test_an_attempt_whose_message_was_lost_moves_once_a_later_one_starts_on_its_gpu() -> None:
    one = {"n1": {"gpus": [{"index": 0}], "algorithms": ["a"]}}
    old = make(nodes=one)
    submit(old, "x")
    old.route(1.0)
    records = [t.to_dict() for t in old.take_effects().tasks.values()]  # committed; publish lost
    new = Core(policy())
    new.load(records, dict(old.sessions), now=4.0)
    new.nodes_changed(one, 4.0)
    submit(new, "y")
    new.route(5.0)
    assert new.tasks["y"].state == "QUEUED"
    report(new, "y", "started", now=5.5)  # the worker runs y: x's message is not ahead of it
    assert new.tasks["x"].attempts[0].state == "SUPERSEDED"
    assert new.tasks["x"].state == "PENDING" and "x" in new.urgent


def test_an_attempt_overtaken_by_an_urgent_one_is_left_waiting() -> None:
    one = {"n1": {"gpus": [{"index": 0}], "algorithms": ["a"]}}
    core = make(nodes=one)
    submit(core, "x")
    core.route(1.0)
    submit(core, "y")
    core.urgent.add("y")  # re-routed from elsewhere: sent ahead of everything
    core.route(3.0)
    report(core, "y", "started", now=3.1)
    assert core.tasks["x"].attempts[0].state == "DISPATCHED"


def test_a_retired_task_still_counts_as_evidence_against_the_gpu_it_failed_on() -> None:
    core = make()
    submit(core, "t", local=0)
    core.route(1.0)
    bad = where(core, "t")
    report(core, "t", "started", now=1.1)
    report(core, "t", "failed", now=1.2, error=APP)
    core.route(2.0)
    good = where(core, "t")
    report(core, "t", "started", now=2.1)
    report(core, "t", "succeeded", now=2.2, result_ref="r")
    core.tick(100.0)
    assert "t" not in core.tasks and "t" in core.retired
    assert core.verdicts(bad).succeeded_elsewhere("t")
    assert not core.verdicts(good).succeeded_elsewhere("t")
    assert core.verdicts(good).failed_elsewhere("t")


def test_a_late_failure_of_a_retired_task_changes_nothing() -> None:
    core = make()
    running(core)
    first = core.tasks["t"].current_attempt
    report(core, "t", "succeeded", now=2.0, result_ref="r")
    core.forget("t")  # finished a while ago: only its summary is left
    core.take_effects()
    core.status({"kind": "failed", "task_id": "t", "attempt_id": first, "time": 3.0, "error": APP},
                3.0, None)
    assert not core.take_effects()
