"""Planned stops: cancelling a task, moving a running one (an operator's migrate, a node
drain), and an attempt that yields (it checkpointed and asked to run again).

A move never kills work outright: the leader asks the attempt to stop (`Stop`: a Redis key
its worker polls), the worker asks the task for a checkpoint (SIGUSR1 to a job, and
`ctx.checkpoint_requested()` to a task), waits up to the grace period, stops it, and
reports `yielded`; the task then queues again, ahead of newer work, and its next attempt
starts from that checkpoint wherever it runs. A cancel fences the live attempt at once:
a job's worker kills its process group when it sees the fence.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from corral.scheduler import placement
from corral.scheduler.core.state import GpuKey
from corral.scheduler.ingress import AdminRequest
from corral.scheduler.records import PENDING, RUNNING, SUPERSEDED, TERMINAL, YIELDED, Attempt, Task

log = logging.getLogger("corral.scheduler")


class Moves:
    def _init(self) -> None:
        self.moving: dict[str, str] = {}  # task id -> why its running attempt was asked to stop

    def task_action(self, req: AdminRequest, now: float) -> None:
        task = self.tasks.get(req.task_id or "")
        if task is None or task.state in TERMINAL:
            log.warning("%s of %s ignored: no such unfinished task", req.action, req.task_id)
            return
        if req.action == "task.cancel":
            self._cancel_live(task, f"cancelled: {req.reason}", now)
        elif task.state == RUNNING and (attempt := task.live_attempt) is not None:
            self._ask_stop(task, attempt, f"migrate: {req.reason}", now)
        else:
            log.warning("migrate of %s ignored: it is %s, not running", task.id, task.state)

    def _cancel_live(self, task: Task, reason: str, now: float) -> None:
        """CANCELLED now, wherever it is: a live attempt is fenced (its worker stops it)."""
        attempt = task.live_attempt
        if attempt is not None:
            self._release(task, attempt)
            self.fx.fences.append(attempt.id)
            attempt.state, attempt.ended = SUPERSEDED, now
            attempt.error = {"type": "Cancelled", "message": reason}
            task.current_attempt = None
            self.seen.pop(task.id, None)
        elif task.state == PENDING:
            self._unqueue(task)
        self.moving.pop(task.id, None)
        self._cancel(task, reason, now)
        self._note(now, "task_cancelled", f"{task.id}: {reason}"[:300])

    def _unqueue(self, task: Task) -> None:
        """Out of whatever queue holds it (a local retry's back-off, a DAG wait: those
        check the state when they come due)."""
        if task.gpus > 1:
            self._unqueue_gang(task.id, task.session)
            self._unreserve(task.id)
        else:
            queue = self.pending.get(task.session)
            if queue is not None and task.id in queue:
                self.pending[task.session] = deque(t for t in queue if t != task.id)
        self.urgent.discard(task.id)
        self.constraints.pop(task.id, None)
        self._demand_changed()

    def _ask_stop(self, task: Task, attempt: Attempt, why: str, now: float) -> None:
        if task.id in self.moving:
            return
        self.moving[task.id] = why
        self.fx.stops.append((attempt.id, self.policy.move_grace))
        self._event(task, now, "stopping", attempt=attempt.id, reason=why, grace=self.policy.move_grace)

    def _stop_running_on(self, node: str, why: str, now: float) -> None:
        """Ask every running attempt on `node` to checkpoint and stop (a drain)."""
        keys: list[GpuKey] = [k for k in self.gpus if k[0] == node]
        ids = {t for k in keys for t in self.gpus[k].outstanding}
        for task_id in sorted(ids, key=lambda t: self.tasks[t].seq):
            task = self.tasks[task_id]
            attempt = task.live_attempt
            if attempt is not None and attempt.state == RUNNING and attempt.node == node:
                self._ask_stop(task, attempt, why, now)

    def _yielded(self, task: Task, attempt: Attempt, event: dict[str, Any], at: float, now: float) -> None:
        """The attempt stopped by choice after saving a checkpoint (asked to move, or a job
        that exited with its checkpoint code): the task queues again, ahead of newer work,
        and takes no retry budget; a migrated one prefers another host."""
        why = self.moving.pop(task.id, None)
        reason = str(event.get("reason") or why or "yielded")[:200]
        attempt.state, attempt.ended = SUPERSEDED, at  # the contract's state; the error says why
        attempt.error = {"type": YIELDED, "message": reason}
        attempt.started = attempt.started or at
        self.seen.pop(task.id, None)
        self._release(task, attempt)
        if why is not None and why.startswith("migrate"):
            here = frozenset(k for k in self.gpus if k[0] == attempt.node)
            if any(k not in here for k in self._usable_set()):  # off this node, if any other can
                self.constraints[task.id] = placement.Constraint(here, frozenset({attempt.node}))
        self._back_in_line(task, at, "yielded", attempt=attempt.id, node=attempt.node, gpu=attempt.gpu,
                           reason=reason)
