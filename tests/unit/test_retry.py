"""The retry decision: local tries, then other hosts, then FAILED."""

from __future__ import annotations

from corral.scheduler.records import FAILED, Attempt, Task
from corral.scheduler.retry import GiveUp, LocalRetry, Reassign, decide, stints


def task_with(*failures: tuple[str, int], local: int = 2, hosts: int = 3, error: str = "ValueError"):
    task = Task(id="t", session="s", algorithm="a", retry={"local": local, "hosts": hosts})
    for i, (node, gpu) in enumerate(failures, 1):
        task.attempts.append(Attempt(f"t.a{i}", node, gpu, FAILED,
                                     error={"type": error, "message": "boom"}))
    return task


def test_the_first_failures_retry_on_the_same_gpu() -> None:
    task = task_with(("n1", 0))
    assert decide(task, task.attempts[-1]) == LocalRetry()
    task = task_with(("n1", 0), ("n1", 0))
    assert decide(task, task.attempts[-1]) == LocalRetry()


def test_after_local_retries_the_task_moves_to_another_host() -> None:
    task = task_with(("n1", 0), ("n1", 0), ("n1", 0))
    got = decide(task, task.attempts[-1])
    assert got == Reassign(frozenset({("n1", 0)}), frozenset({"n1"}))


def test_after_every_host_is_spent_the_task_fails() -> None:
    task = task_with(*[("n1", 0)] * 3, *[("n2", 0)] * 3, *[("n3", 1)] * 3)
    got = decide(task, task.attempts[-1])
    assert isinstance(got, GiveUp) and "9 time(s) on 3 GPU(s)" in got.reason


def test_a_device_fault_moves_at_once() -> None:
    task = task_with(("n1", 2), error="SimulatedGpuFault")
    assert isinstance(decide(task, task.attempts[-1]), Reassign)


def test_zero_local_retries_moves_after_one_failure() -> None:
    task = task_with(("n1", 0), local=0)
    assert isinstance(decide(task, task.attempts[-1]), Reassign)


def test_stints_group_failures_by_consecutive_gpu() -> None:
    task = task_with(("n1", 0), ("n1", 0), ("n2", 1), ("n1", 3))
    assert [[a.gpu for a in run] for run in stints(task.attempts)] == [[0, 0], [1], [3]]
