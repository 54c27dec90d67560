"""The client's operator side, mixed into `Client`: command jobs and their output, cancelling,
moving and checkpointing tasks, and the operator's GPU and node commands. Each is a message
on the ingress queue (or a request key in Redis); the leader alone acts on it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from corral.base import checkpoints, joblogs
from corral.base.etcd import get_json
from corral.base.keys import ADMIN_TASK
from corral.base.retry import RetryPolicy as Retry
from corral.tasks.job import CHECKPOINT_EXIT, JOB, JobSpec

if TYPE_CHECKING:
    from corral.client import Client, Handle

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")


class Control:
    def job(self: Client, command: Sequence[str], *, gpus: int = 1, env: Mapping[str, str] | None = None,
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
        return self.submit(JOB, spec.to_args(), session=session, task_id=task_id, retry=retry, gpus=gpus)

    def logs(self: Client, task_id: str, follow: bool = False, poll: float = 0.5,
             patience: float = 10.0) -> Iterator[tuple[str, str]]:
        """(attempt id, text) pieces of a job's output, every attempt in order; with `follow`,
        waiting for more until the task ends (and up to `patience` seconds for a task just
        submitted to be recorded). KeyError when there is no such task."""
        deadline = time.monotonic() + (patience if follow else 0.0)
        while (record := self.task(task_id)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if record is None:
            raise KeyError(f"no task {task_id!r}")
        redis, cluster = self._blob_store().redis, self.settings.cluster
        done: set[str] = set()
        while True:
            ended = record.get("state") in TERMINAL
            for attempt in record.get("attempts", []):
                attempt_id = attempt["id"]
                if attempt_id in done:
                    continue
                after = "0-0"
                while True:
                    got = joblogs.read(redis, cluster, attempt_id, after)
                    # The running attempt: wait for more while it lasts.
                    running = follow and not ended and record.get("current_attempt") == attempt_id
                    if not got and running:
                        got = joblogs.wait(redis, cluster, attempt_id, after, int(poll * 1000))
                    for entry, data in got:
                        after = entry
                        yield attempt_id, data.decode(errors="replace")
                    if not running:
                        break
                    if not got:
                        record = self.task(task_id) or record
                        ended = record.get("state") in TERMINAL
                done.add(attempt_id)
            if not follow or ended:
                return
            time.sleep(poll)
            record = self.task(task_id) or record

    def cancel(self: Client, task_id: str, reason: str = "") -> None:
        """Cancel a task: CANCELLED wherever it is; a running job's process group is killed."""
        self._task_action("task.cancel", task_id, reason)

    def migrate(self: Client, task_id: str, reason: str = "") -> None:
        """Move a running task: it checkpoints, stops, and runs again on another node."""
        self._task_action("task.migrate", task_id, reason)

    def _task_action(self: Client, action: str, task_id: str, reason: str) -> None:
        self._publish([(ADMIN_TASK, uuid.uuid4().hex, {
            "action": action, "task_id": task_id, "reason": reason or f"{action} by operator"},
            f"{action} {task_id}")])

    def request_checkpoint(self: Client, task_id: str) -> None:
        """Ask a running task for a checkpoint now (M2): a checkpointable algorithm saves one
        at its next step, and the record's `checkpoint_ref` then names it."""
        checkpoints.request(self._blob_store().redis, self.settings.cluster, task_id)

    def checkpoint(self: Client, task_id: str) -> Any:
        """The latest checkpoint a task saved (None if none)."""
        record = self.task(task_id)
        ref = (record or {}).get("checkpoint_ref")
        return None if ref is None else self._blob_store().get(ref)

    def admin(self: Client, action: str, node: str, gpu: int | None = None, reason: str = "",
              wait: float = 10.0, move: bool = True) -> dict[str, Any] | None:
        """gpu.quarantine | gpu.release | node.drain | node.undrain; returns the new health
        record. A drain moves running work (it checkpoints first) unless `move` is False."""
        key = self.keys.gpu_health(node, gpu) if action.startswith("gpu.") else self.keys.node_health(node)
        before = get_json(self.etcd, key)
        kwargs = {"action": action, "node": node, "gpu": gpu, "move": move,
                  "reason": reason or f"{action} by operator"}
        self._publish([(ADMIN_TASK, uuid.uuid4().hex, kwargs, f"{action} {node}:{gpu}")])
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            after = get_json(self.etcd, key)
            if after is not None and after != before:
                return after
            time.sleep(0.1)
        return None
