"""Tasks that wait for upstream tasks (M9): held in an index by upstream id, in no queue;
queued with their `inputs` once every upstream has succeeded; cancelled, with the reason,
when one cannot succeed (and so on down the DAG)."""

from __future__ import annotations

from corral.scheduler.records import CANCELLED, PENDING, SUCCEEDED, TERMINAL, Task, read_retired


class Dag:
    def _init(self) -> None:
        self.waiting: dict[str, set[str]] = {}  # upstream task id -> tasks waiting for it
        self._ended_upstream: list[str] = []  # upstream tasks that ended since the last tick

    def _link(self, task: Task, now: float, fresh: bool = False) -> bool:
        """Resolve a task's upstream tasks (M9). True when all have succeeded and it may be
        queued; otherwise it waits for the rest, or is cancelled when one cannot succeed."""
        assert task.after is not None
        inputs = task.inputs if task.inputs is not None else {}
        known = len(inputs)
        missing = []
        for name, up in task.after.items():
            if name in inputs:
                continue
            state, winner = self._outcome(up)
            if state == SUCCEEDED and winner is not None:
                inputs[name] = [up, winner]
            elif state is None or state in TERMINAL:
                task.inputs = inputs
                self._cancel(task, f"upstream task {up} ({name}) "
                                   f"{'is unknown (compacted?)' if state is None else 'ended ' + state}", now)
                return False
            else:
                missing.append(up)
        changed = len(inputs) != known
        task.inputs = inputs
        for up in missing:
            self.waiting.setdefault(up, set()).add(task.id)
        if not missing and changed and not fresh:
            self._event(task, now, "ready")  # was waiting: its record gains the inputs
        return not missing

    def _outcome(self, task_id: str) -> tuple[str | None, str | None]:
        """A task's state and succeeded attempt, whether it is whole or retired."""
        task = self.tasks.get(task_id)
        if task is not None:
            if task.state != SUCCEEDED:
                return task.state, None
            return SUCCEEDED, next(a.id for a in reversed(task.attempts) if a.state == SUCCEEDED)
        summary = self.retired.get(task_id) or self.recalled.get(task_id)
        if summary is None:
            return None, None
        retired = read_retired(summary)
        return retired.state, retired.winner

    def _wake_dependents(self, now: float) -> None:
        """Tasks whose upstream ended: queued when all their inputs are in, else cancelled
        when one failed; a cancellation cascades down the DAG."""
        ended = self._ended_upstream
        while ended:
            # A dependent may be gone: cancelled through another upstream, then retired.
            waiting = [t for t in self.waiting.pop(ended.pop(), ()) if t in self.tasks]
            for task_id in sorted(waiting, key=lambda t: self.tasks[t].seq):
                task = self.tasks[task_id]
                if task.state != PENDING or not task.waiting:
                    continue
                if self._link(task, now):
                    self._enqueue(task)
                    self._demand_changed()

    def _cancel(self, task: Task, reason: str, at: float) -> None:
        task.reason = reason
        self._set_state(task, CANCELLED)
        self._event(task, at, "cancelled", reason=reason)
