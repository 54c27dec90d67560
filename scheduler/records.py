"""Task and attempt records as they are stored in etcd (`tasks/<id>`, docs/contracts.md, Python API)."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from corral.base.errors import is_device_error

PENDING, QUEUED, RUNNING = "PENDING", "QUEUED", "RUNNING"
SUCCEEDED, FAILED, CANCELLED, REJECTED = "SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, REJECTED})
TASK_STATES = (PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, REJECTED)

DISPATCHED, SUPERSEDED, LOST = "DISPATCHED", "SUPERSEDED", "LOST"
YIELDED = "Yielded"  # the error type of a SUPERSEDED attempt that stopped by choice after a checkpoint
LIVE_ATTEMPT = frozenset({DISPATCHED, RUNNING})


@dataclass(slots=True)
class Attempt:
    id: str
    node: str
    gpu: int
    state: str = DISPATCHED
    dispatched: float = 0.0
    started: float | None = None
    ended: float | None = None
    error: dict[str, Any] | None = None
    bundle: str | None = None  # the message it travels in, when that carries several (M11)
    urgent: bool | None = None  # sent at the urgent priority (None: not sent by the leader)
    gang: list[int] | None = None  # every GPU index it holds on its node, when more than one

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "node": self.node, "gpu": self.gpu, "state": self.state,
               "dispatched": self.dispatched, "started": self.started, "ended": self.ended,
               "error": self.error, "bundle": self.bundle, "urgent": self.urgent}
        if self.gang is not None:
            out["gang"] = self.gang
        return out

    @property
    def gpu_keys(self) -> list[tuple[str, int]]:
        """The GPUs it holds: its own, or its gang's."""
        return [(self.node, i) for i in self.gang] if self.gang else [(self.node, self.gpu)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


@dataclass(slots=True)
class Task:
    id: str
    session: str
    algorithm: str
    args: Any = None
    state: str = PENDING
    submitted: float = 0.0
    seq: int = 0
    gpus: int = 1
    retry: dict[str, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    current_attempt: str | None = None
    result_ref: str | None = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    after: dict[str, str] | None = None  # input name -> upstream task id (M9: a DAG edge)
    inputs: dict[str, list[str]] | None = None  # input name -> [upstream id, its succeeded attempt]
    checkpoint_ref: str | None = None  # the latest checkpoint saved (M2): where attempts resume

    @property
    def waiting(self) -> bool:
        """PENDING and held back: some upstream task has not succeeded yet."""
        return bool(self.after) and len(self.inputs or ()) < len(self.after or ())

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def last_change(self) -> float:
        """When its record last changed (for a finished task: when it ended)."""
        return self.events[-1]["time"] if self.events else self.submitted

    @property
    def live_attempt(self) -> Attempt | None:
        for attempt in reversed(self.attempts):
            if attempt.id == self.current_attempt and attempt.state in LIVE_ATTEMPT:
                return attempt
        return None

    def attempt(self, attempt_id: str) -> Attempt | None:
        return next((a for a in self.attempts if a.id == attempt_id), None)

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every value and is the leader's hot spot.
        out = {
            "id": self.id, "session": self.session, "algorithm": self.algorithm,
            "args": self.args, "state": self.state, "submitted": self.submitted,
            "seq": self.seq, "gpus": self.gpus, "retry": self.retry,
            "attempts": [a.to_dict() for a in self.attempts], "events": self.events,
            "current_attempt": self.current_attempt, "result_ref": self.result_ref,
            "error": self.error, "reason": self.reason, "checkpoint_ref": self.checkpoint_ref,
        }
        if self.after:
            out["after"], out["inputs"] = self.after, self.inputs
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["attempts"] = [Attempt.from_dict(a) for a in data.get("attempts", [])]
        return cls(**values)


# What the leader keeps in memory of a finished task once its record is written: enough to
# refuse its id again, to weigh the evidence its attempts give against GPUs, and to delete
# its record and fences when the retention period ends (about 100 bytes where the whole
# task took 1.6 KB). One string, which the garbage collector never tracks: as tuples, a
# million of them cost the core a sixth of its CPU in collections.
Retired = str
_FIELD, _ITEM = "\x1f", "\x1e"


class RetiredTask(NamedTuple):
    """A retired summary, read back (at compaction, or to weigh GPU evidence)."""

    ended: float
    state: str
    attempts: tuple[str, ...]
    succeeded_on: tuple[str, ...]  # GPUs as "node/index"
    failed_on: tuple[str, ...]  # failures that were not device faults
    winner: str | None = None  # the attempt that succeeded (its result feeds downstream tasks)


def retire(task: Task) -> Retired:
    ended = repr(float(task.last_change))
    attempts = task.attempts
    if len(attempts) == 1 and attempts[0].state == SUCCEEDED:  # nearly every task: one line
        a = attempts[0]
        return f"{ended}\x1f{task.state}\x1f0\x1f{a.id}\x1f{a.node}/{a.gpu}\x1f"
    ids, won, succeeded_on, failed_on = [], "", [], []
    for i, a in enumerate(attempts):
        ids.append(a.id)
        if a.state == SUCCEEDED:
            won = str(i)
            succeeded_on.append(f"{a.node}/{a.gpu}")
        elif a.state == FAILED and not is_device_error(a.error):
            failed_on.append(f"{a.node}/{a.gpu}")
    return _FIELD.join((ended, task.state, won, _ITEM.join(ids), _ITEM.join(succeeded_on),
                        _ITEM.join(failed_on)))


def read_retired(summary: Retired) -> RetiredTask:
    ended, state, won, *lists = summary.split(_FIELD)
    attempts, succeeded_on, failed_on = (tuple(x.split(_ITEM)) if x else () for x in lists)
    return RetiredTask(float(ended), state, attempts, succeeded_on, failed_on,
                       attempts[int(won)] if won else None)


# A chunk of the dedup window (`done/<name>` in etcd): the retired summaries of tasks whose
# records moved to the history store in one step, compressed (about 15 bytes a task), so
# that a new leader knows every id still in the window without reading the history store.
_ID = "\x1d"


def pack_done(summaries: dict[str, Retired], newest: float) -> dict[str, Any]:
    body = "\n".join(f"{task_id}{_ID}{summary}" for task_id, summary in summaries.items())
    return {"tasks": len(summaries), "newest": newest,
            "z": base64.b64encode(zlib.compress(body.encode(), 6)).decode()}


def unpack_done(chunk: dict[str, Any]) -> dict[str, Retired]:
    body = zlib.decompress(base64.b64decode(chunk["z"])).decode()
    return dict(line.split(_ID, 1) for line in body.split("\n")) if body else {}


def retired_state(summary: Retired) -> str:
    return summary.split(_FIELD, 2)[1]


def retired_ended(summary: Retired) -> float:
    return float(summary.split(_FIELD, 1)[0])
