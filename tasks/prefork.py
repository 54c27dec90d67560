"""The GPU worker's pool: Celery's prefork pool, whose main process writes a message to an
idle child as it hands it on, not on its event loop's next round.

Celery queues the message and writes it once the loop has polled the child's pipe as
writable; for a GPU worker's one child, idle whenever a message comes (prefetch 1), that
round cost a lone task about 0.1 ms (docs/benchmarks.md). The write is Celery's own
(`schedule_writes`): a pipe that takes part of it gets the rest when the loop says so."""

from __future__ import annotations

from typing import Any

from celery.concurrency import asynpool, prefork


class AsynPool(asynpool.AsynPool):  # type: ignore[misc]
    def _create_write_handlers(self, hub: Any, *args: Any, **kwargs: Any) -> Any:
        made = super()._create_write_handlers(hub, *args, **kwargs)
        queue = self._quick_put
        write = hub.consolidate_callback  # writes to the pipes it is given that are free

        def send_job(job: Any) -> None:
            queue(job)
            idle = [fd for fd in self._all_inqueues if fd not in self._active_writes]
            if idle:
                write(idle)

        self._quick_put = send_job
        return made


class TaskPool(prefork.TaskPool):  # type: ignore[misc]
    Pool = AsynPool
