"""Checkpoints (M2): the latest one a task's current attempt saved is recorded and sent with
every later attempt; running tasks are asked for one every `checkpoint_every` seconds."""

from __future__ import annotations

from typing import Any

from corral.scheduler.core.state import stale, touch
from corral.scheduler.records import RUNNING, Attempt, Task


class Checkpoints:
    def _init(self) -> None:
        self.checkpoint_due: dict[str, float] = {}  # RUNNING task -> when to ask for a checkpoint

    def _checkpointed(self, task: Task, attempt: Attempt, ref: Any, at: float, now: float) -> None:
        if isinstance(ref, str) and ref and ref != task.checkpoint_ref:
            if task.checkpoint_ref:  # deleted after the record naming its successor commits
                self.fx.stale_checkpoints.append(task.checkpoint_ref)
            task.checkpoint_ref = ref
            self._checkpoint_later(task.id, now)
            self._attempt_event(task, at, "checkpoint", attempt)

    def _ask_checkpoints(self, now: float) -> None:
        """Periodic checkpoint requests (M2) to tasks still running; kept oldest first."""
        for task_id, _ in stale(self.checkpoint_due, now):
            task = self.tasks.get(task_id)
            if task is not None and task.state == RUNNING:
                self.fx.checkpoint_requests.append(task_id)
                self._checkpoint_later(task_id, now)
            else:
                del self.checkpoint_due[task_id]

    def _checkpoint_later(self, task_id: str, now: float) -> None:
        """The next periodic checkpoint request for a running task is one interval away."""
        if self.policy.checkpoint_every:
            touch(self.checkpoint_due, task_id, now + self.policy.checkpoint_every)
