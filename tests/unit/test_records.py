"""What a retired task keeps: read back, it says what the whole record said."""

from __future__ import annotations

from corral.scheduler.records import Attempt, Task, read_retired, retire

DEVICE = {"type": "SimulatedGpuFault", "message": "CUDA error: illegal memory access"}
APP = {"type": "ValueError", "message": "bad input"}


def task(*attempts: Attempt, state: str = "SUCCEEDED") -> Task:
    return Task("t", "s", "a", state=state, attempts=list(attempts),
                events=[{"time": 12.5, "event": state.lower()}])


def test_a_task_that_succeeded_at_once_keeps_its_attempt_and_gpu() -> None:
    got = read_retired(retire(task(Attempt("t.a1", "n1", 3, "SUCCEEDED"))))
    assert got == (12.5, "SUCCEEDED", ("t.a1",), ("n1/3",), (), "t.a1")


def test_a_task_retried_keeps_every_attempt_the_winner_and_the_non_device_failures() -> None:
    got = read_retired(retire(task(Attempt("t.a1", "n1", 0, "FAILED", error=DEVICE),
                                   Attempt("t.a2", "n2", 1, "FAILED", error=APP),
                                   Attempt("t.a3", "n3", 2, "SUCCEEDED"))))
    assert got == (12.5, "SUCCEEDED", ("t.a1", "t.a2", "t.a3"), ("n3/2",), ("n2/1",), "t.a3")


def test_a_task_that_never_ran_keeps_no_attempt_and_no_winner() -> None:
    got = read_retired(retire(task(state="CANCELLED")))
    assert got == (12.5, "CANCELLED", (), (), (), None)
