"""Task and attempt lifecycle: states and their counts, the events of a record, lazy
writes, rejected messages, and what happens to a finished task (retired after a minute to
a summary, its record deleted at the end of the retention period)."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from corral.scheduler.core.state import MAX_EVENTS, stale
from corral.scheduler.ingress import Rejection
from corral.scheduler.records import REJECTED, TERMINAL, Attempt, Retired, Task, read_retired, retire

log = logging.getLogger("corral.scheduler")


class Lifecycle:
    def _init(self) -> None:
        self.tasks: dict[str, Task] = {}  # live ones, and those finished in the last minute
        self.retired: dict[str, Retired] = {}  # finished and written; oldest first
        self._ending: deque[str] = deque()  # finished and still whole, oldest first
        self.lazy: dict[str, float] = {}  # task id -> when its deferred write is due

    def _set_state(self, task: Task, state: str) -> None:
        if task.state != state:
            self.counts[task.state] -= 1
            self.counts[state] += 1
            task.state = state
            if state in TERMINAL:
                self._ending.append(task.id)
                if task.id in self.waiting:
                    self._ended_upstream.append(task.id)

    def _event(self, task: Task, at: float, kind: str, lazy_until: float | None = None,
               **detail: Any) -> None:
        event = {"time": at, "event": kind}
        if detail:
            event.update(detail)
        event["by"] = self.writer
        self._append(task, event, lazy_until)

    def _attempt_event(self, task: Task, at: float, kind: str, attempt: Attempt,
                       lazy_until: float | None = None) -> None:
        """_event for the hot path: every task has several of these."""
        event = {"time": at, "event": kind, "attempt": attempt.id, "node": attempt.node,
                 "gpu": attempt.gpu, "by": self.writer}
        if attempt.bundle is not None:
            event["bundle"] = attempt.bundle
        self._append(task, event, lazy_until)

    def _append(self, task: Task, event: dict[str, Any], lazy_until: float | None) -> None:
        events = task.events
        events.append(event)
        if len(events) > MAX_EVENTS:
            del events[1 : len(events) - MAX_EVENTS + 1]
        if lazy_until is not None and task.id not in self.fx.tasks:
            self.lazy.setdefault(task.id, lazy_until)
            return
        if self.lazy:
            self.lazy.pop(task.id, None)
        self.fx.tasks[task.id] = task

    def _flush_lazy(self, now: float) -> None:
        for task_id, _ in stale(self.lazy, now):  # inserted in order of their due times
            del self.lazy[task_id]
            self.fx.tasks[task_id] = self.tasks[task_id]

    def _reject(self, rejection: Rejection, now: float) -> None:
        log.warning("rejected ingress message %s: %s", rejection.task_id or "(no id)", rejection.reason)
        if rejection.task_id is None or self._known(rejection.task_id):
            return
        task = Task(id=rejection.task_id, session=rejection.session or "",
                    algorithm=rejection.algorithm or "", state=REJECTED, submitted=now,
                    reason=rejection.reason)
        self.tasks[task.id] = task
        self.counts[REJECTED] += 1
        self._ending.append(task.id)
        self._event(task, now, "rejected", reason=rejection.reason)

    def _retire(self, before: float) -> None:
        """Retire the tasks that finished before `before` (their records long written)."""
        ending = self._ending
        while ending:
            task = self.tasks.get(ending[0])
            if task is not None and task.terminal:
                if task.last_change >= before:
                    return
                self.forget(task.id)
            ending.popleft()

    def forget(self, task_id: str) -> None:
        """Keep only the retired summary of a finished task (its record stays in etcd until
        the retention period ends); the simulator calls it as soon as a task settles."""
        task = self.tasks.get(task_id)
        if task is not None and task.terminal:
            del self.tasks[task_id]
            self.retired[task_id] = retire(task)
            for index in (self.lazy, self.seen, self.constraints, self.checkpoint_due):
                index.pop(task_id, None)
            self.urgent.discard(task_id)

    def compact(self, now: float) -> int:
        """Delete the records of tasks finished longer ago than the retention period."""
        cutoff = now - self.policy.task_retention
        self._retire(cutoff)
        old = []
        for task_id, summary in self.retired.items():  # oldest first: read only what expired
            retired = read_retired(summary)
            if retired.ended >= cutoff:
                break
            old.append((task_id, retired))
        for task_id, retired in old:
            del self.retired[task_id]
            self.fx.tasks[task_id] = None
            # Its id may be used again (it is no longer known): its fences must not outlive it.
            self.fx.unfences.extend(retired.attempts)
            self.counts[retired.state] -= 1
        if old:
            log.info("compacted %d terminal task record(s) older than %.0f s", len(old),
                     self.policy.task_retention)
        return len(old)
