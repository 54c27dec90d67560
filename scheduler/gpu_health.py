"""GPU quarantine as a pure policy over the stream of attempt outcomes.

A failure on a GPU is *evidence against the GPU* when it is a device fault (CUDA, Xid,
ECC) or when the same task later succeeded on another GPU. A failure of a task that also
failed elsewhere is evidence against the task, not the GPU. A GPU is quarantined once its
current streak (failures since its last success) holds K pieces of evidence from at least
two distinct tasks. An NVML health signal quarantines at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

HEALTHY, SUSPECT, QUARANTINED = "healthy", "suspect", "quarantined"


@dataclass(frozen=True)
class Failure:
    task_id: str
    device: bool


@dataclass(frozen=True)
class GpuHealth:
    state: str = HEALTHY
    streak: tuple[Failure, ...] = ()
    reason: str = ""
    since: float = 0.0
    manual: bool = False

    @property
    def usable(self) -> bool:
        return self.state != QUARANTINED

    @property
    def consecutive_failures(self) -> int:
        return len(self.streak)

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state, "consecutive_failures": len(self.streak),
                "reason": self.reason, "since": self.since, "manual": self.manual,
                "streak": [[f.task_id, f.device] for f in self.streak]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> GpuHealth:
        streak = tuple(Failure(str(t), bool(d)) for t, d in data.get("streak", []))  # type: ignore[union-attr]
        return cls(str(data.get("state", HEALTHY)), streak, str(data.get("reason", "")),
                   float(data.get("since", 0.0)), bool(data.get("manual", False)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Verdicts:
    """What is known of a task's fate on other GPUs (looked up by the caller)."""

    succeeded_elsewhere: Callable[[str], bool] = field(default=lambda t: False)
    failed_elsewhere: Callable[[str], bool] = field(default=lambda t: False)


def evaluate(h: GpuHealth, now: float, k: int, v: Verdicts) -> GpuHealth:
    if h.state == QUARANTINED:
        return h
    evidence = [
        f for f in h.streak
        if f.device or (v.succeeded_elsewhere(f.task_id) and not v.failed_elsewhere(f.task_id))
    ]
    if len(evidence) >= k and len({f.task_id for f in evidence}) >= 2:
        kinds = "device faults" if all(f.device for f in evidence) else "failures"
        return replace(h, state=QUARANTINED, since=now,
                       reason=f"{len(evidence)} consecutive {kinds} from "
                              f"{len({f.task_id for f in evidence})} tasks")
    return replace(h, state=SUSPECT if h.streak else HEALTHY)


def on_failure(h: GpuHealth, task_id: str, device: bool, now: float, k: int, v: Verdicts) -> GpuHealth:
    streak = (*h.streak, Failure(task_id, device))[-4 * k:]
    return evaluate(replace(h, streak=streak), now, k, v)


def on_success(h: GpuHealth) -> GpuHealth:
    if h.state == QUARANTINED:
        return h
    return replace(h, state=HEALTHY, streak=())


def on_signal(h: GpuHealth, reason: str, now: float) -> GpuHealth:
    """An NVML health signal (critical Xid, double-bit ECC): quarantine at once."""
    if h.state == QUARANTINED and h.reason == reason:
        return h
    return replace(h, state=QUARANTINED, reason=reason, since=now)


def quarantine(h: GpuHealth, reason: str, now: float) -> GpuHealth:
    return replace(h, state=QUARANTINED, reason=reason, since=now, manual=True)


def release(h: GpuHealth, now: float) -> GpuHealth:
    return GpuHealth(state=HEALTHY, since=now, reason="released")
