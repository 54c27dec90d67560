"""The client's side of command jobs and planned stops: submit a job, read its output (every
attempt's, during the run and after), cancel or migrate a task. Mixed into `Client`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from corral.base import joblogs
from corral.base.keys import ADMIN_TASK, INGRESS_QUEUE
from corral.base.retry import RetryPolicy as Retry
from corral.tasks.job import CHECKPOINT_EXIT, JOB, JobSpec

if TYPE_CHECKING:
    from corral.client import Handle

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")


class Jobs:
    def job(self, command: Sequence[str], *, gpus: int = 1, env: Mapping[str, str] | None = None,
            cwd: str | None = None, session: str = "default", task_id: str | None = None,
            retry: Retry | None = None, checkpoint_exit: int = CHECKPOINT_EXIT,
            checkpoint_signal: str = "SIGUSR1") -> Handle:
        """Run `command` as a job on `gpus` GPUs of one node; a Handle, as `submit` gives.

        The job sees exactly its GPUs in `CUDA_VISIBLE_DEVICES`, and `CORRAL_JOB_ID`,
        `CORRAL_ATTEMPT` and `CORRAL_CHECKPOINT_DIR` (restored before every attempt). Exit 0
        succeeds, `checkpoint_exit` runs it again from its checkpoint, anything else fails
        the attempt under `retry`.
        """
        spec = JobSpec.parse({"command": list(command), "env": dict(env or {}), "cwd": cwd,
                              "checkpoint_exit": checkpoint_exit, "checkpoint_signal": checkpoint_signal})
        return self.submit(JOB, spec.to_args(), session=session, task_id=task_id, retry=retry,  # type: ignore[attr-defined]
                           gpus=gpus)

    def logs(self, task_id: str, follow: bool = False, poll: float = 0.5,
             patience: float = 10.0) -> Iterator[tuple[str, str]]:
        """(attempt id, text) pieces of a job's output, every attempt in order; with `follow`,
        waiting for more until the task ends (and up to `patience` seconds for a task just
        submitted to be recorded). KeyError when there is no such task."""
        redis, cluster = self._blob_store().redis, self.settings.cluster  # type: ignore[attr-defined]
        done: set[str] = set()
        deadline = time.monotonic() + (patience if follow else 0.0)
        while True:
            record = self.task(task_id)  # type: ignore[attr-defined]
            if record is None and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if record is None:
                raise KeyError(f"no task {task_id!r}")
            attempts = [a["id"] for a in record.get("attempts", [])]
            ended = record.get("state") in TERMINAL
            for attempt_id in attempts:
                if attempt_id in done:
                    continue
                live = follow and not ended and attempt_id == attempts[-1] and \
                    record.get("current_attempt") == attempt_id
                after = "-"
                for entry, data in joblogs.read(redis, cluster, attempt_id, after):
                    after = entry
                    yield attempt_id, data.decode(errors="replace")
                if live:  # the running attempt: wait for more while it lasts
                    after = after if after != "-" else "0-0"
                    while True:
                        got = joblogs.wait(redis, cluster, attempt_id, after, int(poll * 1000))
                        for entry, data in got:
                            after = entry
                            yield attempt_id, data.decode(errors="replace")
                        if not got:
                            now = self.task(task_id)  # type: ignore[attr-defined]
                            if now is None or now.get("current_attempt") != attempt_id \
                                    or now.get("state") in TERMINAL:
                                for entry, data in joblogs.read(redis, cluster, attempt_id, after):
                                    after = entry
                                    yield attempt_id, data.decode(errors="replace")
                                break
                done.add(attempt_id)
            if not follow or ended:
                return
            time.sleep(poll)

    def cancel(self, task_id: str, reason: str = "") -> None:
        """Cancel a task: CANCELLED wherever it is; a running job's process group is killed."""
        self._task_action("task.cancel", task_id, reason)

    def migrate(self, task_id: str, reason: str = "") -> None:
        """Move a running task: it checkpoints, stops, and runs again on another node."""
        self._task_action("task.migrate", task_id, reason)

    def _task_action(self, action: str, task_id: str, reason: str) -> None:
        self.celery.send_task(ADMIN_TASK, kwargs={  # type: ignore[attr-defined]
            "action": action, "task_id": task_id, "reason": reason or f"{action} by operator"},
            queue=INGRESS_QUEUE)
