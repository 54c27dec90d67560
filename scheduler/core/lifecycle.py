"""Task and attempt lifecycle: states and their counts, the events of a record, lazy
writes, rejected messages, and what happens to a finished task: a few seconds after it
ends it is retired to a summary and its record moves from etcd to the history store (the
shell puts it there, then deletes it from etcd in the transaction that adds its summary to
a `done/` chunk); at the end of the retention period its summary and chunk go too."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from corral.scheduler.core.state import MAX_EVENTS, stale
from corral.scheduler.core.stats import rejection_kind
from corral.scheduler.ingress import Rejection
from corral.scheduler.records import (
    REJECTED,
    TERMINAL,
    Attempt,
    Retired,
    Task,
    pack_done,
    read_retired,
    retire,
    retired_ended,
)

log = logging.getLogger("corral.scheduler")

CHUNK = 99  # tasks per move to history: the chunk and their deletes fit one etcd transaction
RECALLED = 100_000  # summaries of tasks recalled from the history store, at most


@dataclass
class Archive:
    """One move to the history store: put `records` there, then, in one etcd transaction,
    write `chunk` under `done/<name>` and delete their `tasks/<id>` keys."""

    name: str
    records: list[dict[str, Any]]
    chunk: dict[str, Any]


class Lifecycle:
    def _init(self) -> None:
        self.tasks: dict[str, Task] = {}  # live ones, and those finished in the last minute
        self.retired: dict[str, Retired] = {}  # finished and written; oldest first
        self.archiving: dict[str, dict[str, Any]] = {}  # retired, record still in etcd: to move
        self.chunks: dict[str, float] = {}  # done/<name> -> when its newest task ended
        self.recalled: dict[str, Retired] = {}  # older ones the history store told the shell of
        self._chunk_serial = 0
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
        self.stats["rejected:" + rejection_kind(rejection.reason)] += 1
        if rejection.task_id is None or self.known(rejection.task_id):
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
        """Keep only the retired summary of a finished task and queue its record for the
        history store; the simulator calls it as soon as a task settles."""
        task = self.tasks.get(task_id)
        if task is not None and task.terminal:
            del self.tasks[task_id]
            self.retired[task_id] = retire(task)
            self.archiving[task_id] = task.to_dict()
            for index in (self.lazy, self.seen, self.constraints, self.checkpoint_due):
                index.pop(task_id, None)
            self.urgent.discard(task_id)

    def recall(self, records: list[dict[str, Any]]) -> None:
        """Tasks that finished before the dedup window, found in the history store by the
        shell: their ids are known again (a resubmission is ignored, a dependent finds its
        upstream's outcome). Kept in a bounded memory; not counted among this term's tasks."""
        for record in records:
            self.recalled[record["id"]] = retire(Task.from_dict(record))
        while len(self.recalled) > RECALLED:
            del self.recalled[next(iter(self.recalled))]

    def archive_batch(self, now: float) -> Archive | None:
        """The next records to move to the history store (the oldest first), or None. They
        stay queued until `archived()`: a move that fails is tried again."""
        if not self.archiving:
            return None
        ids = []
        for task_id in self.archiving:
            ids.append(task_id)
            if len(ids) == CHUNK:
                break
        summaries = {t: self.retired[t] for t in ids}
        newest = max(retired_ended(s) for s in summaries.values())
        self._chunk_serial += 1
        name = f"{int(now * 1000):013d}.{self.writer or 'core'}.{self._chunk_serial}"
        return Archive(name, [self.archiving[t] for t in ids], pack_done(summaries, newest))

    def archived(self, archive: Archive) -> None:
        """The shell moved `archive`: its records are in the history store and out of etcd."""
        for record in archive.records:
            self.archiving.pop(record["id"], None)
        self.chunks[archive.name] = archive.chunk["newest"]

    def compact(self, now: float) -> int:
        """Forget the summaries of tasks finished longer ago than the dedup window (the shell
        asks the history store about ids it no longer knows) and delete the `done/` chunks
        that held them."""
        cutoff = now - self.policy.dedup_window
        self._retire(cutoff)
        old = []
        for task_id, summary in self.retired.items():  # oldest first: read only what expired
            retired = read_retired(summary)
            if retired.ended >= cutoff:
                break
            if task_id not in self.archiving:  # not moved yet (the history store is away): kept
                old.append((task_id, retired))
        for task_id, retired in old:
            del self.retired[task_id]
            # Its fences go: a message of its attempts that comes this late finds none and
            # does not run (only what the leader issued runs).
            self.fx.unfences.extend(retired.attempts)
            self.counts[retired.state] -= 1
        expired = [name for name, newest in self.chunks.items() if newest < cutoff]
        for name in expired:
            del self.chunks[name]
            self.fx.chunks[name] = None
        if old:
            log.info("forgot %d task(s) finished more than %.0f s ago", len(old),
                     self.policy.dedup_window)
        return len(old)
