"""The scheduler's state machine: plain data in, effects out, no I/O.

The service feeds it ingress messages, status events, node snapshots and ticks, in
order, from one thread. Each input mutates the in-memory state and queues effects:
etcd writes (flushed in one fenced transaction per tick), GPU-queue publishes and
message acks, which the shell performs only after the writes have committed.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from corral.keys import Keys, gpu_queue
from scheduler import placement
from scheduler.ingress import Rejection, SessionRequest, Submission
from scheduler.records import (
    DISPATCHED,
    FAILED,
    PENDING,
    QUEUED,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    SUPERSEDED,
    TASK_STATES,
    Attempt,
    Task,
)

log = logging.getLogger("corral.scheduler")

GpuKey = tuple[str, int]
MAX_EVENTS = 200


@dataclass
class Gpu:
    node: str
    index: int
    usable: bool = True
    outstanding: set[str] = field(default_factory=set)  # task ids with a live attempt here


@dataclass
class Publish:
    queue: str
    message: dict[str, Any]


@dataclass
class Effects:
    writes: dict[str, Any] = field(default_factory=dict)
    publishes: list[Publish] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.writes or self.publishes or self.acks)


class Core:
    def __init__(self, keys: Keys, depth: int = 2) -> None:
        self.keys = keys
        self.depth = depth
        self.tasks: dict[str, Task] = {}
        self.pending: dict[str, deque[str]] = {}
        self.gpus: dict[GpuKey, Gpu] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.algorithms: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.seq = 0
        self.fx = Effects()

    # ------------------------------------------------------------------ inputs

    def load(self, records: list[dict[str, Any]], sessions: dict[str, dict[str, Any]]) -> None:
        """Rebuild all state from etcd alone (takeover or cold start)."""
        self.tasks.clear()
        self.pending.clear()
        self.counts.clear()
        for gpu in self.gpus.values():
            gpu.outstanding.clear()
        self.sessions = dict(sessions)
        tasks = sorted((Task.from_dict(r) for r in records), key=lambda t: t.seq)
        for task in tasks:
            self.tasks[task.id] = task
            self.counts[task.state] += 1
            self.seq = max(self.seq, task.seq)
            if task.state == PENDING:
                self.pending.setdefault(task.session, deque()).append(task.id)
            elif (attempt := task.live_attempt) is not None:
                gpu = self.gpus.get((attempt.node, attempt.gpu))
                if gpu is not None and gpu.usable:
                    gpu.outstanding.add(task.id)
                else:
                    self._supersede(task, attempt, 0.0, "its GPU is gone after a leader change")

    def submit(self, parsed: Submission | SessionRequest | Rejection, now: float, ack: Any) -> None:
        if isinstance(parsed, SessionRequest):
            self._session(parsed, now)
        elif isinstance(parsed, Rejection):
            self._reject(parsed, now)
        elif parsed.task_id in self.tasks:
            log.info("task %s already exists; duplicate submission ignored", parsed.task_id)
        else:
            self.seq += 1
            task = Task(
                id=parsed.task_id,
                session=parsed.session,
                algorithm=parsed.algorithm,
                args=parsed.args,
                submitted=now,
                seq=self.seq,
                gpus=parsed.gpus,
                retry=dict(parsed.retry),
            )
            self.tasks[task.id] = task
            self.counts[PENDING] += 1
            self._event(task, now, "submitted")
            self.pending.setdefault(task.session, deque()).append(task.id)
            if task.session not in self.sessions:
                self._session(SessionRequest(task.session, "open"), now)
        if ack is not None:
            self.fx.acks.append(ack)

    def status(self, event: dict[str, Any], now: float, ack: Any) -> None:
        if ack is not None:
            self.fx.acks.append(ack)
        task = self.tasks.get(str(event.get("task_id")))
        attempt = task.attempt(str(event.get("attempt_id"))) if task else None
        if task is None or attempt is None:
            log.warning("status for unknown task/attempt ignored: %s", _brief(event))
            return
        if task.current_attempt != attempt.id or attempt.state not in (DISPATCHED, RUNNING):
            log.info("late status %s of %s attempt %s ignored", event.get("kind"), task.id, attempt.id)
            return
        kind = event.get("kind")
        at = float(event.get("time") or now)
        if kind == "started":
            attempt.state, attempt.started = RUNNING, at
            self._set_state(task, RUNNING)
            self._event(task, at, "started", attempt=attempt.id, node=attempt.node, gpu=attempt.gpu)
        elif kind == "succeeded":
            attempt.state, attempt.ended = SUCCEEDED, at
            attempt.started = attempt.started or at
            task.result_ref = event.get("result_ref")
            self._finish(task, attempt, SUCCEEDED, at)
        elif kind == "failed":
            attempt.state, attempt.ended = FAILED, at
            attempt.error = event.get("error") or {"type": "Unknown", "message": "no error given"}
            task.error = attempt.error
            self._finish(task, attempt, FAILED, at)

    def nodes_changed(self, nodes: dict[str, dict[str, Any]], now: float) -> None:
        """Level-triggered: make the GPU table match the registered nodes."""
        self.nodes = nodes
        self.algorithms = {a for n in nodes.values() for a in n.get("algorithms", [])}
        present: set[GpuKey] = set()
        for name, info in nodes.items():
            for g in info.get("gpus", []):
                key = (name, int(g["index"]))
                present.add(key)
                if key not in self.gpus:
                    self.gpus[key] = Gpu(name, key[1])
                    log.info("GPU %s:%d joined", *key)
        for key in [k for k in self.gpus if k not in present]:
            gpu = self.gpus.pop(key)
            log.warning("GPU %s:%d left (node lease gone); re-routing %d task(s)", *key,
                        len(gpu.outstanding))
            for task_id in sorted(gpu.outstanding, key=lambda t: self.tasks[t].seq):
                task = self.tasks[task_id]
                attempt = task.live_attempt
                if attempt is not None:
                    self._supersede(task, attempt, now, f"node {key[0]} was lost")

    def route(self, now: float) -> None:
        slots = [placement.Slot(k, len(g.outstanding), g.usable) for k, g in self.gpus.items()]
        pending = {s: q for s, q in self.pending.items() if q}
        if not pending:
            return
        for task_id, key in placement.assign(pending, slots, self.depth):
            # assign() takes each session's tasks from the head, in order.
            self.pending[self.tasks[task_id].session].popleft()
            self._dispatch(self.tasks[task_id], self.gpus[key], now)

    def take_effects(self) -> Effects:
        fx, self.fx = self.fx, Effects()
        return fx

    # ------------------------------------------------------------- summaries

    def summary(self) -> dict[str, Any]:
        running = Counter(t.session for t in self._live_tasks())
        return {
            "tasks": {s.lower(): self.counts.get(s, 0) for s in TASK_STATES},
            "sessions": [
                {
                    "name": name,
                    "fixed_workers": s.get("fixed_workers", 0),
                    "share_ratio": s.get("share_ratio", 1.0),
                    "allocated": 0,
                    "pending": len(self.pending.get(name, ())),
                    "running": running.get(name, 0),
                }
                for name, s in sorted(self.sessions.items())
            ],
            "gpus": [
                {
                    "node": g.node,
                    "index": g.index,
                    "state": "healthy" if g.usable else "unusable",
                    "session": None,
                    "consecutive_failures": 0,
                    "outstanding": len(g.outstanding),
                }
                for _, g in sorted(self.gpus.items())
            ],
        }

    # -------------------------------------------------------------- internals

    def _live_tasks(self) -> list[Task]:
        return [self.tasks[t] for g in self.gpus.values() for t in g.outstanding]

    def _dispatch(self, task: Task, gpu: Gpu, now: float) -> None:
        attempt = Attempt(
            id=f"{task.id}.a{len(task.attempts) + 1}", node=gpu.node, gpu=gpu.index, dispatched=now
        )
        task.attempts.append(attempt)
        task.current_attempt = attempt.id
        gpu.outstanding.add(task.id)
        self._set_state(task, QUEUED)
        self._event(task, now, "dispatched", attempt=attempt.id, node=gpu.node, gpu=gpu.index)
        self.fx.publishes.append(
            Publish(
                gpu_queue(gpu.node, gpu.index),
                {
                    "task_id": task.id,
                    "attempt_id": attempt.id,
                    "algorithm": task.algorithm,
                    "args": task.args,
                    "session": task.session,
                    "node": gpu.node,
                    "gpu": gpu.index,
                    "checkpoint": None,
                },
            )
        )

    def _finish(self, task: Task, attempt: Attempt, state: str, at: float) -> None:
        self._release(task, attempt)
        self._set_state(task, state)
        detail = {"attempt": attempt.id, "node": attempt.node, "gpu": attempt.gpu}
        if attempt.error:
            detail["error"] = f"{attempt.error.get('type')}: {attempt.error.get('message')}"
        self._event(task, at, state.lower(), **detail)

    def _supersede(self, task: Task, attempt: Attempt, now: float, why: str) -> None:
        self._release(task, attempt)
        attempt.state, attempt.ended = SUPERSEDED, now
        task.current_attempt = None
        self._set_state(task, PENDING)
        self._event(task, now, "superseded", attempt=attempt.id, reason=why)
        self._requeue_in_order(task)

    def _requeue_in_order(self, task: Task) -> None:
        queue = self.pending.setdefault(task.session, deque())
        index = next((i for i, t in enumerate(queue) if self.tasks[t].seq > task.seq), len(queue))
        queue.insert(index, task.id)

    def _release(self, task: Task, attempt: Attempt) -> None:
        gpu = self.gpus.get((attempt.node, attempt.gpu))
        if gpu is not None:
            gpu.outstanding.discard(task.id)

    def _reject(self, rejection: Rejection, now: float) -> None:
        log.warning("rejected ingress message %s: %s", rejection.task_id or "(no id)",
                    rejection.reason)
        if rejection.task_id is None or rejection.task_id in self.tasks:
            return
        task = Task(
            id=rejection.task_id,
            session=rejection.session or "",
            algorithm=rejection.algorithm or "",
            state=REJECTED,
            submitted=now,
            reason=rejection.reason,
        )
        self.tasks[task.id] = task
        self.counts[REJECTED] += 1
        self._event(task, now, "rejected", reason=rejection.reason)

    def _session(self, req: SessionRequest, now: float) -> None:
        record = {
            "name": req.name,
            "fixed_workers": req.fixed_workers,
            "share_ratio": req.share_ratio,
            "max_workers": req.max_workers,
            "priority": req.priority,
            "algorithms": list(req.algorithms),
            "state": "open" if req.action == "open" else "closed",
            "opened": self.sessions.get(req.name, {}).get("opened", now),
        }
        self.sessions[req.name] = record
        self.fx.writes[self.keys.session(req.name)] = record

    def _set_state(self, task: Task, state: str) -> None:
        if task.state != state:
            self.counts[task.state] -= 1
            self.counts[state] += 1
            task.state = state

    def _event(self, task: Task, at: float, kind: str, **detail: Any) -> None:
        task.events.append({"time": at, "event": kind, **detail})
        if len(task.events) > MAX_EVENTS:
            del task.events[1 : len(task.events) - MAX_EVENTS + 1]
        self.fx.writes[self.keys.task(task.id)] = task


def _brief(event: dict[str, Any]) -> str:
    return ", ".join(f"{k}={event.get(k)}" for k in ("kind", "task_id", "attempt_id"))
