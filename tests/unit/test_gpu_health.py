"""GPU quarantine policy: bad GPUs go out, bad tasks do not take good GPUs with them."""

from __future__ import annotations

from corral.scheduler.gpu_health import (
    HEALTHY,
    QUARANTINED,
    SUSPECT,
    GpuHealth,
    Verdicts,
    evaluate,
    on_failure,
    on_signal,
    on_success,
    release,
)

K = 3
UNKNOWN = Verdicts()


def fail_many(h: GpuHealth, tasks: list[str], device: bool = False, v: Verdicts = UNKNOWN) -> GpuHealth:
    for t in tasks:
        h = on_failure(h, t, device, 1.0, K, v)
    return h


def test_k_device_faults_from_two_tasks_quarantine() -> None:
    h = fail_many(GpuHealth(), ["a", "b"], device=True)
    assert h.state == SUSPECT
    h = fail_many(h, ["c"], device=True)
    assert h.state == QUARANTINED and "3 consecutive device faults" in h.reason


def test_k_faults_of_one_task_do_not_quarantine() -> None:
    assert fail_many(GpuHealth(), ["a"] * 5, device=True).state == SUSPECT


def test_a_success_resets_the_streak() -> None:
    h = on_success(fail_many(GpuHealth(), ["a", "b"], device=True))
    assert h.state == HEALTHY and h.consecutive_failures == 0
    assert fail_many(h, ["c"], device=True).state == SUSPECT


def test_a_bad_task_on_good_gpus_never_quarantines() -> None:
    failing_everywhere = Verdicts(succeeded_elsewhere=lambda t: False, failed_elsewhere=lambda t: True)
    h = fail_many(GpuHealth(), [f"bad{i}" for i in range(10)], v=failing_everywhere)
    assert h.state == SUSPECT


def test_task_failures_count_once_the_tasks_succeed_elsewhere() -> None:
    h = fail_many(GpuHealth(), ["a", "b", "c"])
    assert h.state == SUSPECT  # not yet known whether the tasks or the GPU are at fault
    fine_elsewhere = Verdicts(succeeded_elsewhere=lambda t: True, failed_elsewhere=lambda t: False)
    assert evaluate(h, 2.0, K, fine_elsewhere).state == QUARANTINED


def test_an_nvml_signal_quarantines_at_once() -> None:
    h = on_signal(GpuHealth(), "Xid 79: GPU has fallen off the bus", 5.0)
    assert h.state == QUARANTINED and h.reason.startswith("Xid 79")


def test_release_returns_a_clean_gpu() -> None:
    h = release(fail_many(GpuHealth(), ["a", "b", "c"], device=True), 9.0)
    assert h.state == HEALTHY and h.streak == ()


def test_health_round_trips_through_its_record() -> None:
    h = fail_many(GpuHealth(), ["a", "b"], device=True)
    assert GpuHealth.from_dict(h.to_dict()) == h
