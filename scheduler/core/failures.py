"""A failed attempt (M1): the leader alone decides what follows. A local retry is a new
attempt it sends to the same GPU, at once or after the policy's back-off (held here, not in
the broker); otherwise the task moves to another host, or ends FAILED with the reason.
Superseding an attempt (its GPU went away) puts its task back at the front of its queue."""

from __future__ import annotations

import heapq
from typing import Any

from corral.base.errors import is_device_error
from corral.scheduler import gpu_health as gh
from corral.scheduler import placement, retry
from corral.scheduler.core.state import GpuKey
from corral.scheduler.records import FAILED, PENDING, SUPERSEDED, Attempt, Task

WORKER_LOST = "WorkerLost"  # the error of an attempt whose worker process died or went silent
POISON_AFTER = 3  # worker deaths that make a task poison


class Failures:
    def _init(self) -> None:
        # Local retries waiting out their back-off: (due, seq, task id, GPU), soonest first.
        self.retry_due: list[tuple[float, int, str, GpuKey]] = []

    def _failed(self, task: Task, attempt: Attempt, error: dict[str, Any], at: float, now: float,
                may_stay: bool = True) -> None:
        """`may_stay`: False when the GPU itself is in doubt (its worker went silent), so no
        retry there."""
        attempt.state, attempt.ended, attempt.error = FAILED, at, error
        attempt.started = attempt.started or at
        task.error = error
        self.seen.pop(task.id, None)
        self._event(task, at, "failed", attempt=attempt.id, node=attempt.node, gpu=attempt.gpu,
                    error=f"{error.get('type')}: {error.get('message')}")
        self._note(at, "attempt_failed", f"{task.id}: {error.get('type')}: {str(error.get('message'))[:200]}",
                   node=attempt.node, gpu=attempt.gpu)
        key = (attempt.node, attempt.gpu)
        died = error.get("type") == WORKER_LOST
        if not died:  # a worker that died is no evidence against its GPU (NVML faults are)
            self._gpu_failed(task, key, is_device_error(error), now)
        decision = retry.decide(task, attempt)
        self._release(task, attempt)
        if died and self._poisoned(task, at):
            return
        if isinstance(decision, retry.LocalRetry) and may_stay and self._usable(key):
            self.stats["retry_local"] += 1
            if decision.wait > 0:
                self._retry_later(task, key, now + decision.wait, at)
            else:
                self._again_here(task, key, now)
            return
        self._leave(task, decision, at, key)

    def _leave(self, task: Task, decision: retry.Decision, at: float, key: GpuKey) -> None:
        """Move the task off `key`, or end it when the budget or the cluster allows no move."""
        if isinstance(decision, retry.GiveUp):
            self._fail(task, decision.reason, at)
            return
        avoid = (decision.avoid_gpus if isinstance(decision, retry.Reassign)
                 else frozenset({key}))
        if not any(k not in avoid and self.gpu_health.get(k, gh.GpuHealth()).usable for k in self.gpus):
            self._fail(task, f"no GPU left to try: it failed on {len(avoid)}, "
                             f"the other {len(self.gpus) - len(avoid)} are out of service", at)
            return
        self._move(task, at, avoid)

    def _move(self, task: Task, at: float, avoid: frozenset[GpuKey]) -> None:
        self.stats["reassigned"] += 1
        self._constrain(task)
        self._back_in_line(task, at, "reassigning", avoid=sorted(f"{n}:{i}" for n, i in avoid))

    def _retry_later(self, task: Task, key: GpuKey, due: float, at: float) -> None:
        """Hold a local retry until its back-off has passed; it takes no slot meanwhile."""
        task.current_attempt = None
        self._set_state(task, PENDING)
        self._event(task, at, "retry-later", until=due, node=key[0], gpu=key[1])
        heapq.heappush(self.retry_due, (due, task.seq, task.id, key))

    def _retry_due(self, now: float) -> None:
        """Send the local retries whose back-off has passed to their GPU; one that can no
        longer take them (gone, out of service) moves them, budget permitting."""
        while self.retry_due and self.retry_due[0][0] <= now:
            _, _, task_id, key = heapq.heappop(self.retry_due)
            task = self.tasks.get(task_id)
            if task is None or task.state != PENDING or task.current_attempt is not None:
                continue
            if key in self.gpus and self._usable(key):
                self._again_here(task, key, now)
            else:
                self._leave(task, retry.move(task), now, key)
                self._demand_changed()

    def _again_here(self, task: Task, key: GpuKey, now: float) -> None:
        """A local retry: sent to the same GPU ahead of its queue; a gang queues for its GPUs
        again (it takes them as soon as they are all free, most likely the same ones)."""
        if task.gpus > 1:
            self._back_in_line(task, now)
        else:
            self._dispatch(task, self.gpus[key], now, ahead=True)

    def _fail(self, task: Task, reason: str, at: float) -> None:
        task.reason = reason
        self._set_state(task, FAILED)
        self._event(task, at, "gave-up", reason=reason)
        self._note(at, "task_failed", f"{task.id}: {reason}"[:300])

    def _constrain(self, task: Task) -> None:
        failed = [a for a in task.attempts if a.state == FAILED]
        if failed:
            self.constraints[task.id] = placement.Constraint(
                frozenset((a.node, a.gpu) for a in failed), frozenset(a.node for a in failed))

    def _supersede(self, task: Task, attempt: Attempt, now: float, why: str, died: bool = False) -> None:
        """Take the attempt back (its GPU went away, or its worker died holding it: `died`)
        and put the task at the front of its queue, unless its worker deaths make it poison."""
        self._release(task, attempt)
        self.fx.fences.append(attempt.id)
        attempt.state, attempt.ended = SUPERSEDED, now
        if died:
            attempt.error = {"type": WORKER_LOST, "message": why}
        task.current_attempt = None
        self.seen.pop(task.id, None)
        if died and self._poisoned(task, now):
            return
        self._constrain(task)
        self._back_in_line(task, now, "superseded", attempt=attempt.id, reason=why)

    def _poisoned(self, task: Task, at: float) -> bool:
        """A task whose attempts keep ending their worker process (killed, crashed, silent) is
        poison: FAILED after POISON_AFTER deaths, whatever its retry budget, lest it take
        GPU after GPU down with it."""
        deaths = sum(1 for a in task.attempts if a.error is not None and a.error.get("type") == WORKER_LOST)
        if deaths < POISON_AFTER:
            return False
        self._fail(task, f"poison task: {deaths} of its attempts ended with their worker process "
                         "(killed, crashed or silent); it is not retried again", at)
        return True
