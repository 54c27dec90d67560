"""Liveness: an attempt whose worker stopped beating fails as WorkerLost; a GPU holding work
with no word from its worker gives it back; an attempt overtaken in its GPU's queue by a
later one was never delivered and is re-routed."""

from __future__ import annotations

import logging

from corral.scheduler.core.state import OVERTAKEN_AFTER, GpuKey, stale, touch
from corral.scheduler.records import DISPATCHED, RUNNING, Attempt

log = logging.getLogger("corral.scheduler")


class Liveness:
    def _init(self) -> None:
        self.seen: dict[str, float] = {}  # task id -> last sign of life of its RUNNING attempt
        self.gpu_seen: dict[GpuKey, float] = {}  # last word from a GPU's worker, or first work given

    def _check_liveness(self, now: float) -> None:
        """Silent attempts and silent GPUs; both clocks are kept oldest first (see _touch)."""
        limit = self.policy.heartbeat_timeout
        for task_id, last in stale(self.seen, now - limit):
            task = self.tasks[task_id]
            attempt = task.live_attempt
            self.seen.pop(task_id, None)
            if attempt is None or attempt.state != RUNNING:
                continue
            log.warning("attempt %s on %s:%d silent for %.1f s: worker lost", attempt.id,
                        attempt.node, attempt.gpu, now - last)
            self._failed(task, attempt, {"type": "WorkerLost",
                                         "message": f"no heartbeat for {now - last:.1f} s"}, now, now,
                         may_stay=False)
        # A worker that died holding a message it had not started leaves that attempt
        # DISPATCHED forever (the broker returns it only after its visibility timeout):
        # a GPU with work and no word from its worker for as long gives that work back.
        for key, last in stale(self.gpu_seen, now - limit):
            gpu = self.gpus.get(key)
            if gpu is None or not gpu.outstanding:
                del self.gpu_seen[key]  # idle: its clock restarts with its next work
                continue
            attempts = [self.tasks[t].live_attempt for t in gpu.outstanding]
            if any(a is not None and a.state == RUNNING for a in attempts):
                continue
            log.warning("no word from the worker of GPU %s:%d for %.1f s; moving its queued work",
                        key[0], key[1], now - last)
            touch(self.gpu_seen, key, now)
            # A gang's attempt is its lead GPU's to start: the others' workers stay silent.
            held = [(t, a) for t in gpu.outstanding if (a := self.tasks[t].live_attempt) is not None
                    and (a.node, a.gpu) == key]
            if not held:
                continue
            # The worker took the first of them, urgent ones ahead: that one may have killed it.
            first = min(held, key=lambda p: (not p[1].urgent, p[1].dispatched), default=(None, None))[0]
            for task_id, attempt in sorted(held, key=lambda p: self.tasks[p[0]].seq):
                self._supersede(self.tasks[task_id], attempt, now,
                                f"no word from the worker of GPU {key[0]}:{key[1]}", died=task_id == first)

    def _overtaken(self, attempt: Attempt, now: float) -> None:
        """A GPU queue is first in, first out within a priority, and a normal message comes
        after every other: once one starts, an attempt sent to that GPU clearly before it
        that has still not started never will (its message was lost: a leader that died
        between its commit and its publish, a Redis that lost its queues). Re-route it now;
        the GPU's silence check would never fire while its worker keeps running others."""
        gpu = self.gpus.get((attempt.node, attempt.gpu))
        if gpu is None or len(gpu.outstanding) < 2:
            return
        before = attempt.dispatched - OVERTAKEN_AFTER
        lost = [(task, other) for task_id in gpu.outstanding
                if (other := (task := self.tasks[task_id]).live_attempt) is not None
                and other.state == DISPATCHED and other.dispatched < before]
        for task, other in sorted(lost, key=lambda pair: pair[0].seq):
            log.warning("attempt %s on %s:%d never started while a later one did; re-routing",
                        other.id, other.node, other.gpu)
            self._supersede(task, other, now, "its message never reached the worker: "
                                              f"{attempt.id}, sent later, started first")
