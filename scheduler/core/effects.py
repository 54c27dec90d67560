"""What the core asks the world to do, as typed values. The shell (`service.py`) turns them
into etcd keys and Celery messages, in this order: one fenced etcd transaction for every
write, then one Redis round trip for fences and dispatches, then the acknowledgements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corral.scheduler.records import Task

GpuKey = tuple[str, int]


@dataclass(slots=True)
class Dispatch:
    """A message for one GPU's queue: an attempt, a batch of attempts (M11) or a warm-up."""

    gpu: GpuKey
    message: dict[str, Any]
    id: str  # the attempt's id (a batch's or warm-up's own): the Celery task id
    urgent: bool = False  # ahead of everything already queued there
    warm: bool = False  # a warm-up of the session's algorithms, not an attempt


@dataclass
class Effects:
    tasks: dict[str, Task | None] = field(default_factory=dict)  # task records (None deletes)
    plans: dict[GpuKey, dict[str, Any]] = field(default_factory=dict)  # GPU -> its plan entry
    gpu_health: dict[GpuKey, dict[str, Any]] = field(default_factory=dict)
    node_health: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    chunks: dict[str, None] = field(default_factory=dict)  # done/<name> chunks that expired
    fences: list[str] = field(default_factory=list)  # attempt ids to mark superseded
    unfences: list[str] = field(default_factory=list)  # attempt ids of deleted records: fences go
    checkpoint_requests: list[str] = field(default_factory=list)  # task ids asked for a checkpoint
    stops: list[tuple[str, float]] = field(default_factory=list)  # (attempt id, grace): stop and move
    stale_checkpoints: list[str] = field(default_factory=list)  # replaced ones, deleted once written
    dispatches: list[Dispatch] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tasks or self.dispatches or self.acks or self.fences or self.plans
                    or self.gpu_health or self.node_health or self.sessions or self.unfences
                    or self.checkpoint_requests or self.stale_checkpoints or self.chunks or self.stops)

    @property
    def writes(self) -> int:
        """How many etcd keys these effects write or delete."""
        return (len(self.tasks) + len(self.plans) + len(self.gpu_health) + len(self.node_health)
                + len(self.sessions) + len(self.chunks))

    @property
    def redis(self) -> bool:
        """Whether there is anything for Redis besides acknowledgements."""
        return bool(self.fences or self.dispatches or self.unfences or self.checkpoint_requests
                    or self.stale_checkpoints or self.stops)

    def unsent(self) -> Effects:
        """What these effects still owe Redis (fences, dispatches, acks ...), to be sent
        before the next tick's: what etcd already holds is never written twice."""
        return Effects(fences=self.fences, unfences=self.unfences,
                       checkpoint_requests=self.checkpoint_requests, stops=self.stops,
                       stale_checkpoints=self.stale_checkpoints, dispatches=self.dispatches,
                       acks=self.acks)

    def after(self, earlier: Effects | None) -> Effects:
        """These effects with the Redis work `earlier` still owes put in front of theirs."""
        if earlier is None:
            return self
        self.fences[:0] = earlier.fences
        self.unfences[:0] = earlier.unfences
        self.checkpoint_requests[:0] = earlier.checkpoint_requests
        self.stops[:0] = earlier.stops
        self.stale_checkpoints[:0] = earlier.stale_checkpoints
        self.dispatches[:0] = earlier.dispatches
        self.acks[:0] = earlier.acks
        return self
