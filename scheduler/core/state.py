"""What every part of the core shares: the policy, a GPU's entry, the clocks and the index
of GPUs ready for work. Plain data and small helpers; no I/O."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from corral.base.config import Settings
from corral.scheduler import node_health as nh

GpuKey = tuple[str, int]
NO_GPUS: frozenset[GpuKey] = frozenset()
MAX_EVENTS = 200
LAZY_WRITE = 1.0  # seconds a RUNNING transition may wait to be written with the next change
RETIRE_AFTER = 2.0  # seconds a finished task stays whole (in memory and etcd) before it moves
OVERTAKEN_AFTER = 1.0  # seconds between two sends to one GPU that no clock skew reorders


@dataclass(frozen=True)
class Policy:
    """The core's knobs. Build it from the settings (`Policy.from_settings`): the defaults
    live in `Settings` alone; the fields here only name what the core reads."""

    depth: int
    quarantine_after: int
    heartbeat_timeout: float
    idle_grace: float  # a shrinking session keeps its surplus GPUs this long
    dedup_window: float  # finished tasks' summaries are kept (in memory and etcd) this long
    batch_max: int  # most tasks in one GPU-queue message (M11); 1 turns batching off
    batch_seconds: float  # work one message should carry, by the measured run times
    batch_backlog_seconds: float  # the most it carries, when a deep backlog waits anyway
    checkpoint_every: float  # ask running tasks for a checkpoint this often (0: never)
    move_grace: float  # a running attempt asked to move has this long to checkpoint and stop
    nodes: nh.NodePolicy
    max_live: int  # unfinished tasks past which new submissions are refused
    etcd_high_water: int  # bytes of etcd's database past which new submissions are refused
    allocate_every: float = 0.05  # seconds between allocator runs while demand changes
    commit_linger: float = 0.0  # the longest a busy leader holds a tick to commit more at once

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> Policy:
        s = settings or Settings()
        values: dict[str, Any] = {
            "depth": s.queue_depth, "quarantine_after": s.quarantine_after,
            "heartbeat_timeout": s.heartbeat * s.heartbeat_misses, "idle_grace": s.idle_grace,
            "dedup_window": min(s.dedup_window, s.task_retention), "batch_max": s.batch_max,
            "batch_seconds": s.batch_seconds, "batch_backlog_seconds": s.batch_backlog_seconds,
            "commit_linger": s.commit_linger,
            "checkpoint_every": s.checkpoint_every,
            "move_grace": s.move_grace,
            "nodes": nh.NodePolicy(stable_after=s.node_stable),
            "max_live": s.max_live_tasks, "etcd_high_water": int(s.etcd_quota * s.etcd_high_water),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(slots=True)
class Gpu:
    node: str
    index: int
    outstanding: set[str] = field(default_factory=set)  # task ids with a live attempt here
    key: GpuKey = ("", 0)

    def __post_init__(self) -> None:
        self.key = (self.node, self.index)


class Ready:
    """GPUs that can take another message, by the session they serve, in the order they
    became so. Routing takes the first few a queue could fill instead of scanning every GPU
    with room: at thousands of GPUs that scan was most of a tick. Idle GPUs come first.
    Unplanned GPUs are kept under None: `where` holds every usable GPU with room."""

    def __init__(self) -> None:
        self.idle: dict[str | None, dict[GpuKey, None]] = {}
        self.part: dict[str | None, dict[GpuKey, None]] = {}
        self.where: dict[GpuKey, tuple[str | None, bool]] = {}

    def put(self, key: GpuKey, session: str | None, load: int, depth: int, usable: bool) -> None:
        old = self.where.pop(key, None)
        if old is not None:
            (self.idle if old[1] else self.part)[old[0]].pop(key, None)
        if usable and load < depth:
            (self.idle if load == 0 else self.part).setdefault(session, {})[key] = None
            self.where[key] = (session, load == 0)

    def take(self, session: str | None, need: int) -> list[GpuKey]:
        out = list(itertools.islice(self.idle.get(session, ()), need))
        if len(out) < need:
            out.extend(itertools.islice(self.part.get(session, ()), need - len(out)))
        return out


def touch(clock: dict[Any, float], key: Any, now: float) -> None:
    """Set a last-seen time, moving the key to the end: the dict stays oldest first."""
    clock.pop(key, None)
    clock[key] = now


def stale(clock: dict[Any, float], cutoff: float) -> list[tuple[Any, float]]:
    """The entries at or before `cutoff`, from the front of an oldest-first dict."""
    out = []
    for key, when in clock.items():
        if when > cutoff:
            break
        out.append((key, when))
    return out


def brief(event: dict[str, Any]) -> str:
    return ", ".join(f"{k}={event.get(k)}" for k in ("kind", "task_id", "attempt_id"))
