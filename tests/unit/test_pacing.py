"""Group commit (core/pacing.py): a busy leader may hold its next tick to write more in one
etcd transaction, but never while a GPU with work waiting has nothing to run."""

from __future__ import annotations

from corral.scheduler.core import Core

from .harness import ONE_NODE, make, report, submit

GAP = 0.02  # seconds each GPU takes per message in these tests


def finish_oldest(core: Core, key: tuple[str, int], now: float) -> str:
    """The GPU's oldest message ends: started and succeeded."""
    tid = min(core.gpus[key].outstanding, key=lambda t: core.tasks[t].seq)
    report(core, tid, "started", now=now - GAP / 2)
    report(core, tid, "succeeded", now=now)
    return tid


def busy(linger: float = 0.008, gap: float = GAP, backlog: int = 20) -> tuple[Core, float]:
    """Two GPUs that have each ended three messages `gap` apart, refilled each time, with
    a backlog left behind; returns the core and the time."""
    core = make(ONE_NODE, commit_linger=linger, batch_max=1)
    for i in range(backlog):
        submit(core, f"t{i}", algorithm="corral.echo")
    core.route(1.0)
    now = 1.0
    for _ in range(3):
        now += gap
        for key in sorted(core.gpus):
            finish_oldest(core, key, now)
        core.route(now)
    core.take_effects()
    return core, now


def test_a_busy_leader_may_hold_its_tick_while_every_gpu_has_a_message_to_run() -> None:
    core, now = busy()
    finish_oldest(core, ("node-1", 0), now + GAP)  # one message left in flight there
    assert 0.0 < core.hold() <= 0.008


def test_the_hold_is_a_share_of_the_time_a_gpu_takes_per_message() -> None:
    core, now = busy(gap=0.005)
    finish_oldest(core, ("node-1", 0), now + 0.005)
    assert 0.0 < core.hold() < 0.005


def test_a_tick_is_due_at_once_when_a_gpu_with_work_waiting_has_nothing_in_flight() -> None:
    core, now = busy()
    finish_oldest(core, ("node-1", 0), now + GAP)
    finish_oldest(core, ("node-1", 0), now + GAP)  # ran dry: its refill must go now
    assert core.hold() == 0.0


def test_a_lone_task_is_never_held() -> None:
    core, now = busy(backlog=8)  # every task routed: no backlog left
    for key in sorted(core.gpus):
        while core.gpus[key].outstanding:
            now += GAP
            finish_oldest(core, key, now)
    submit(core, "lone", algorithm="corral.echo", now=now)
    assert core.hold() == 0.0


def test_without_a_backlog_nothing_is_held() -> None:
    core, now = busy(backlog=8)
    finish_oldest(core, ("node-1", 0), now + GAP)
    assert core.hold() == 0.0


def test_an_urgent_task_is_never_held() -> None:
    core, now = busy()
    finish_oldest(core, ("node-1", 0), now + GAP)
    core.urgent.add(next(iter(core.pending["s"])))  # as a re-routed task is
    assert core.hold() == 0.0


def test_a_linger_of_zero_turns_group_commit_off() -> None:
    core, now = busy(linger=0.0)
    finish_oldest(core, ("node-1", 0), now + GAP)
    assert core.hold() == 0.0
