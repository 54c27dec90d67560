"""A worker process's writes behind its work: the members of a message report as they end
and the next member starts without waiting for Redis.

A message of several short tasks used to pay two round trips per task on the GPU's
critical path (the claim and the outcome). Its members are now claimed together when the
message starts (tasks/runner.py), and each member's outcome, and the next member's
`started`, go to this thread, which sends whatever has queued up in one pipeline. Nothing
is acknowledged before it is written: the runner calls `flush()` before the message
returns to Celery, and before any write of its own that must come after them (a
checkpoint), so the scheduler reads every attempt's events in the order they happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger("corral.worker")

Write = Callable[[Any], None]  # queues its commands on a pipeline
PATIENCE = 60.0  # seconds a finished attempt keeps trying to report its outcome


class Reporter(threading.Thread):
    def __init__(self, client: Any, patience: float = PATIENCE) -> None:
        super().__init__(daemon=True, name="corral-reporter")
        self.client, self.patience = client, patience
        self._queue: list[tuple[float, Write]] = []
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def send(self, write: Write) -> None:
        """Queue a write; it goes out with whatever else is waiting, in order."""
        with self._cond:
            self._queue.append((time.monotonic(), write))
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

    def _write(self, batch: list[tuple[float, Write]]) -> None:
        """One pipeline for the batch; through a broker restart or failover, for `patience`
        seconds from the oldest write (the work is done, and losing its report would run it
        again; past that, the scheduler's liveness check takes the attempt as lost)."""
        write_all(self.client, [w for _, w in batch], batch[0][0] + self.patience)


def write_all(client: Any, writes: list[Write], deadline: float) -> None:
    """The writes in one pipeline, tried again on a lost connection until `deadline`."""
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                for write in writes:
                    write(pipe)
                pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("cannot report to Redis yet (%s); trying again", exc)
            time.sleep(0.2)
