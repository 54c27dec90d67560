"""A worker process's writes behind its work: the members of a message report as they end
and the next member starts without waiting for Redis.

A message of several short tasks used to pay two round trips per task on the GPU's
critical path (the claim and the outcome). Its members are now claimed together when the
message starts (tasks/runner.py), and each member's outcome, and the next member's
`started`, go to this thread, which sends whatever has queued up in one pipeline. A
`started` still waiting when its attempt's outcome joins it is left out: the outcome
carries `began`, and the scheduler takes it for both (one event a task, not two, for the
short tasks that messages carry by the dozen). Nothing is acknowledged before it is
written: the runner calls `flush()` before the message returns to Celery, and before any
write of its own that must come after them (a checkpoint), so the scheduler reads every
attempt's events in the order they happened.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from corral.base.broker import Write, write_all
from corral.tasks.status import publish

log = logging.getLogger("corral.worker")

Entry = tuple[float, Write | None, list[dict[str, Any]], frozenset[str]]  # when, write, starts, ends
PATIENCE = 60.0  # seconds a finished attempt keeps trying to report its outcome


class Reporter(threading.Thread):
    def __init__(self, client: Any, patience: float = PATIENCE) -> None:
        super().__init__(daemon=True, name="corral-reporter")
        self.client, self.patience = client, patience
        self._queue: list[Entry] = []
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def send(self, write: Write, ends: frozenset[str] = frozenset()) -> None:
        """Queue a write (the outcome of the attempts in `ends`, if any); it goes out with
        whatever else is waiting, in order."""
        self._put((time.monotonic(), write, [], ends))

    def started(self, events: list[dict[str, Any]]) -> None:
        """Queue `started` events; one whose attempt's outcome is queued before they go is
        left out."""
        self._put((time.monotonic(), None, events, frozenset()))

    def _put(self, entry: Entry) -> None:
        with self._cond:
            self._queue.append(entry)
            self._cond.notify_all()

    def flush(self) -> None:
        """Return once everything queued is written; raise what made a write give up."""
        with self._cond:
            while self._queue or self._busy:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue, self._busy = self._queue, [], True
            try:
                self._write(batch)
            except BaseException as exc:  # kept for flush(): the runner decides what it means
                log.error("%d writes to Redis were given up: %s", len(batch), exc)
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, batch: list[Entry]) -> None:
        """One pipeline for the batch; through a broker restart or failover, for `patience`
        seconds from the oldest write (the work is done, and losing its report would run it
        again; past that, the scheduler's liveness check takes the attempt as lost)."""
        ended = frozenset().union(*(ends for _, _, _, ends in batch))
        writes: list[Write] = []
        for _, write, starts, _ in batch:
            if write is not None:
                writes.append(write)
            elif kept := [e for e in starts if e["attempt_id"] not in ended]:
                writes.append(lambda pipe, kept=kept: [publish(pipe, e) for e in kept])
        write_all(self.client, writes, batch[0][0] + self.patience)
