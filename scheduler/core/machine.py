"""The scheduler's state machine: plain data in, effects out, no I/O.

The service feeds it ingress messages, status events, node snapshots and ticks, in
order, from one thread. Each input mutates the in-memory state and queues effects
(`effects.py`): etcd writes (flushed in one fenced transaction per tick), GPU-queue
dispatches and message acks, which the shell performs only after the writes have committed.

`Core` is assembled from one class per concern, each in its own module with the state it
owns (its `_init` method declares it):

| module | concern |
|---|---|
| `lifecycle.py` | task and attempt states, the event log of a record, lazy writes, retiring, compaction |
| `routing.py` | pending queues, placement onto ready GPUs, batching (M11), GPU occupancy |
| `plan.py` | sessions, the allocator's plan, hand-over and warm-up of GPUs |
| `failures.py` | a failed attempt: retry here (after a back-off), move, or give up (M1) |
| `liveness.py` | silent attempts and GPUs, messages that never arrived |
| `health.py` | node registrations, GPU and node health, operator actions (M4, M5) |
| `dag.py` | tasks that wait for upstream tasks (M9) |
| `checkpoints.py` | the latest checkpoint of a task, periodic requests (M2) |
| `gangs.py` | tasks on several GPUs of one node: reservation, start, release |
| `moves.py` | cancelling, moving a running task (migrate, drain), an attempt that yields |
| `admission.py` | backpressure: new work refused, with a reason, past the live-task or etcd mark |
| `stats.py` | counts, latencies and recent notable events, for metrics and the status page |
| `pacing.py` | group commit: how long a busy leader may hold a tick to write more in one transaction |
| `takeover.py` | rebuilding all of it from etcd alone (M3, M6) |
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Any

from corral.scheduler import gpu_health as gh
from corral.scheduler.core.admission import Admission
from corral.scheduler.core.checkpoints import Checkpoints
from corral.scheduler.core.dag import Dag
from corral.scheduler.core.effects import Effects
from corral.scheduler.core.failures import Failures
from corral.scheduler.core.gangs import Gangs
from corral.scheduler.core.health import Health
from corral.scheduler.core.lifecycle import Lifecycle
from corral.scheduler.core.liveness import Liveness
from corral.scheduler.core.moves import Moves
from corral.scheduler.core.pacing import Pacing
from corral.scheduler.core.plan import Planning
from corral.scheduler.core.routing import Routing
from corral.scheduler.core.state import LAZY_WRITE, RETIRE_AFTER, Policy, brief, touch
from corral.scheduler.core.stats import Stats
from corral.scheduler.core.takeover import Takeover
from corral.scheduler.ingress import AdminRequest, Rejection, SessionRequest, Submission
from corral.scheduler.records import (
    DISPATCHED,
    PENDING,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    TASK_STATES,
    Attempt,
    Task,
    retired_state,
)

log = logging.getLogger("corral.scheduler")

CLOCK_SKEW = 86400.0  # a worker's time further from the leader's than this is not believed


class Core(Lifecycle, Routing, Gangs, Planning, Failures, Moves, Liveness, Health, Dag, Checkpoints,
           Admission, Stats, Pacing, Takeover):
    def __init__(self, policy: Policy | None = None, writer: str = "") -> None:
        self.writer = writer  # recorded in every event: which replica decided it
        self.policy = policy or Policy.from_settings()
        self.counts: Counter[str] = Counter()  # tasks by state
        self.seq = 0  # submission order, kept in each record
        self.fx = Effects()
        self._next_liveness_check = 0.0
        self._next_compaction = 0.0
        for part in (Lifecycle, Routing, Gangs, Planning, Failures, Moves, Liveness, Health, Dag, Checkpoints,
                     Admission, Stats, Pacing):
            part._init(self)

    # ------------------------------------------------------------------ inputs

    def submit(self, parsed: Submission | SessionRequest | AdminRequest | Rejection, now: float,
               ack: Any) -> None:
        if type(parsed) is not Submission:  # noqa: E721 (the usual case, checked fast)
            if isinstance(parsed, SessionRequest):
                self._session(parsed, now)
            elif isinstance(parsed, AdminRequest):
                if parsed.task_id is not None:
                    self.task_action(parsed, now)
                else:
                    self.admin(parsed, now)
            elif isinstance(parsed, Rejection):
                self._reject(parsed, now)
        elif self._taken(parsed.task_id):
            log.info("task %s already exists; duplicate submission ignored", parsed.task_id)
        elif not self._admit():
            self._reject(Rejection(parsed.task_id, f"refused, submit again later: {self.refusal}",
                                   parsed.algorithm, parsed.session), now)
        elif parsed.after and (unknown := [u for u in parsed.after.values() if not self.known(u)]):
            self._reject(Rejection(parsed.task_id, f"'after' names unknown task(s) {', '.join(unknown)}: "
                                   "submit upstream tasks first", parsed.algorithm, parsed.session), now)
        else:
            self.seq += 1
            task = Task(parsed.task_id, parsed.session, parsed.algorithm, parsed.args, PENDING, now,
                        self.seq, parsed.gpus, parsed.retry)  # retry is never mutated: shared
            self.tasks[task.id] = task
            self.counts[PENDING] += 1
            self._demand_changed()
            task.events.append({"time": now, "event": "submitted", "by": self.writer})
            self.fx.tasks[task.id] = task
            if parsed.after is not None:
                task.after = parsed.after
            if task.after is None or self._link(task, now, fresh=True):  # else it waits (M9)
                self._enqueue(task)
            if task.session not in self.sessions:
                self._session(SessionRequest(task.session, "open", auto=True), now)
        if ack is not None:
            self.fx.acks.append(ack)

    def known(self, task_id: str) -> bool:
        """Whether a task of this id exists (live, finished within the dedup window, or
        recalled from the history store)."""
        return task_id in self.tasks or task_id in self.retired or task_id in self.recalled

    def _taken(self, task_id: str) -> bool:
        """Whether a submission of this id is a duplicate. A REJECTED task's id is free: a
        producer refused by backpressure (or for a fixable reason) sends the same id again,
        and the new record replaces the rejection."""
        task = self.tasks.get(task_id)
        if task is not None:
            if task.state != REJECTED:
                return True
            del self.tasks[task_id]
        else:
            summary = self.retired.get(task_id) or self.recalled.get(task_id)
            if summary is None:
                return False
            if retired_state(summary) != REJECTED:
                return True
            if self.retired.pop(task_id, None) is None:
                del self.recalled[task_id]
                return False  # counted in an earlier term
            self.archiving.pop(task_id, None)
        self.counts[REJECTED] -= 1
        return False

    def status(self, event: dict[str, Any], now: float, ack: Any) -> None:
        if ack is not None:
            self.fx.acks.append(ack)
        node, gpu = event.get("node"), event.get("gpu", -1)
        if type(node) is str and type(gpu) is int:  # noqa: E721 (the usual case, checked fast)
            touch(self.gpu_seen, (node, gpu), now)
        else:
            with contextlib.suppress(TypeError, ValueError):
                touch(self.gpu_seen, (str(node), int(gpu)), now)
        kind = event.get("kind")
        if kind == "warmed":
            self._warmed(event)
            return
        task_id = event.get("task_id")
        if not task_id:
            return  # a worker's sign of life outside any task (warm-up heartbeat)
        task = self.tasks.get(str(task_id))
        attempt = None
        if task is not None and task.attempts:
            attempt_id = event.get("attempt_id")
            last = task.attempts[-1]  # the current attempt: the usual case
            attempt = last if last.id == attempt_id else task.attempt(str(attempt_id))
        if task is None or attempt is None:
            log.info("status for an unknown task or attempt ignored: %s", brief(event))
            return
        at = event.get("time")  # the worker's clock, unless odd (not a number, NaN, far off)
        if type(at) not in (float, int) or not -CLOCK_SKEW < at - now < CLOCK_SKEW:
            at = now
        if task.current_attempt != attempt.id or attempt.state not in (DISPATCHED, RUNNING):
            log.info("late %s of %s attempt %s ignored", event.get("kind"), task.id, attempt.id)
            return
        if kind in ("heartbeat", "progress"):
            touch(self.seen, task.id, now)
        elif kind == "checkpoint":
            touch(self.seen, task.id, now)
            self._checkpointed(task, attempt, event.get("checkpoint_ref"), at, now)
        elif kind == "started":
            touch(self.seen, task.id, now)
            if attempt.state == DISPATCHED:
                self._started(task, attempt, at, now)
            return
        if attempt.state == DISPATCHED and kind in ("succeeded", "failed", "yielded"):
            # A member of a message whose `started` the worker left out, its outcome being
            # ready to go with it: the outcome says when it began.
            began = event.get("began")
            if type(began) is float and -CLOCK_SKEW < began - now < CLOCK_SKEW and began <= at:
                self._started(task, attempt, began, now)
        key = (attempt.node, attempt.gpu)
        held = self.busy.get(key, 0)
        if kind == "succeeded":
            attempt.state, attempt.ended = SUCCEEDED, at
            if attempt.started:
                ran = event.get("ran")  # a batch call's time per input, else the attempt's own
                if type(ran) is not float or not 0.0 <= ran < CLOCK_SKEW:
                    ran = max(0.0, at - attempt.started)
                before = self.runtime.get(task.algorithm)
                self.runtime[task.algorithm] = ran if before is None else before + 0.2 * (ran - before)
            attempt.started = attempt.started or at
            task.result_ref = event.get("result_ref")
            self.seen.pop(task.id, None)
            self._release(task, attempt)
            self._set_state(task, SUCCEEDED)
            self._attempt_event(task, at, "succeeded", attempt)
            self._gpu_succeeded(task, attempt, now)
        elif kind == "failed":
            error = event.get("error") or {"type": "Unknown", "message": "no error given"}
            self._failed(task, attempt, error, at, now)
        elif kind == "yielded":
            self._yielded(task, attempt, event, at, now)
        if self.busy.get(key, 0) < held:
            self._message_ended(key, now)

    def _started(self, task: Task, attempt: Attempt, at: float, now: float) -> None:
        attempt.state, attempt.started = RUNNING, at
        if len(task.attempts) == 1:
            self.latencies.append(("start", max(0.0, at - task.submitted)))
        self._set_state(task, RUNNING)
        self._checkpoint_later(task.id, now)
        # Deferred: a short task's next write (its outcome) carries this event too.
        self._attempt_event(task, at, "started", attempt, lazy_until=now + LAZY_WRITE)
        if attempt.urgent is False and (attempt.bundle is None
                                        or attempt.bundle.startswith(attempt.id + "+")):
            self._overtaken(attempt, now)

    def tick(self, now: float) -> None:
        if self._ended_upstream:
            self._wake_dependents(now)
        if self.retry_due and self.retry_due[0][0] <= now:
            self._retry_due(now)
        self._rejoin(now)
        if now >= self._next_liveness_check:
            self._next_liveness_check = now + 0.5
            self._check_liveness(now)
            if self.checkpoint_due:
                self._ask_checkpoints(now)
            self._flush_lazy(now)
            self._retire(now - RETIRE_AFTER)
        if now >= self._next_compaction:
            self._next_compaction = now + min(30.0, self.policy.dedup_window / 2)
            self.compact(now)
        self.route(now)

    def take_effects(self) -> Effects:
        fx, self.fx = self.fx, Effects()
        return fx

    # ------------------------------------------------------------- summaries

    def summary(self) -> dict[str, Any]:
        running = Counter(t.session for t in self._live_tasks() if t.state == RUNNING)
        allocated = Counter(s for s in self.plan.values() if s is not None)
        return {
            "leader": self.writer,
            "admission": self.admission(),
            "tasks": {s.lower(): self.counts.get(s, 0) for s in TASK_STATES},
            "sessions": [
                {"name": name, "fixed_workers": s.get("fixed_workers", 0),
                 "share_ratio": s.get("share_ratio", 1.0), "allocated": allocated.get(name, 0),
                 "state": s.get("state", "open"),
                 "pending": len(self.pending.get(name, ())) + len(self.gang_queue.get(name, ())),
                 "running": running.get(name, 0)}
                for name, s in sorted(self.sessions.items())
            ],
            "nodes": {name: h.to_dict() for name, h in sorted(self.node_health.items())},
            "gpus": [
                {"node": k[0], "index": k[1], "state": self._gpu_state(k), "session": self.plan.get(k),
                 "warm": self.plan_info.get(k, {}).get("warm", []),
                 "consecutive_failures": self.gpu_health.get(k, gh.GpuHealth()).consecutive_failures,
                 "reason": self.gpu_health.get(k, gh.GpuHealth()).reason,
                 "outstanding": len(self.gpus[k].outstanding) if k in self.gpus else 0}
                for k in sorted(set(self.gpus) | set(self.gpu_health))
            ],
            "recent": list(self.recent),
        }
