"""Routing: per-session pending queues onto the GPUs ready to take a message, one task or a
batch of short ones per message (M11); what each GPU holds."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from corral.scheduler import placement
from corral.scheduler.core.effects import Dispatch
from corral.scheduler.core.state import NO_GPUS, Gpu, GpuKey, Ready, touch
from corral.scheduler.records import DISPATCHED, PENDING, QUEUED, Attempt, Task


class Routing:
    def _init(self) -> None:
        self.pending: dict[str, deque[str]] = {}  # session -> task ids in submit order
        self.constraints: dict[str, placement.Constraint] = {}  # moved tasks: GPUs to avoid
        self.urgent: set[str] = set()  # re-routed or moved: placed first, sent ahead
        self.gpus: dict[GpuKey, Gpu] = {}
        self.busy: dict[GpuKey, int] = {}  # messages in flight, of GPUs that have any
        self.live: Counter[str] = Counter()  # session -> tasks with a live attempt
        self.bundle_of: dict[str, str] = {}  # task id -> its multi-task message (M11)
        self.bundle_left: dict[str, int] = {}  # such a message -> its members still live
        self.runtime: dict[str, float] = {}  # algorithm -> moving average of its run seconds
        self.ready = Ready()  # GPUs that can take a message, by session: routing's index
        self._ready_topology = -1
        self._usable_cache: tuple[int, frozenset[GpuKey]] = (-1, frozenset())

    def route(self, now: float) -> None:
        self._allocate(now)
        if self.gang_queue:
            self._route_gangs(now)
        pending = {s: q for s, q in self.pending.items() if q}
        if not pending:
            return
        special = sorted(
            (t for t in self.urgent | self.constraints.keys()
             if (task := self.tasks[t]).state == PENDING and task.gpus == 1),
            key=lambda t: self.tasks[t].seq)
        # Only GPUs that can take something: those with room that serve a session with
        # pending work; for urgent tasks also their session's full GPUs (one slot beyond the
        # depth); for constrained ones, which may borrow, every GPU with room.
        usable, busy = self._usable_set(), self.busy
        if self._ready_topology != self._topology:
            self._reindex_all()
        batch = ({s: n for s in pending if (n := self._batch_size(s, pending[s])) > 1}
                 if self.runtime or self.batching else {})
        own: dict[str | None, list[GpuKey]] = {}
        for s, queue in pending.items():  # only as many GPUs as the queue could fill
            keys = self.ready.take(s, len(queue))
            if keys:
                own[s] = keys
        load = {k: busy.get(k, 0) for keys in own.values() for k in keys}
        if special:
            if any(t in self.constraints for t in special):
                for k, (owner, _) in self.ready.where.items():  # usable, with room
                    if k not in load:
                        own.setdefault(owner, []).append(k)
                        load[k] = busy.get(k, 0)
            cap = self.policy.depth + 1
            for s in {self.tasks[t].session for t in special if t in self.urgent}:
                for k in self.serving.get(s, NO_GPUS):
                    if (k in usable and k not in load and k not in self.reserved
                            and (n := busy.get(k, 0)) < cap):
                        own.setdefault(s, []).append(k)
                        load[k] = n
        if not load:
            return
        assigned = placement.assign_grouped(
            pending, load, own, self.policy.depth, self.constraints,
            [(t, self.tasks[t].session, t in self.urgent) for t in special], batch, self.suspect)
        if not assigned:
            return
        taken: dict[str, set[str]] = {}
        for ids, key in assigned:
            tasks = [self.tasks[t] for t in ids]
            session = tasks[0].session  # a message holds one session's tasks
            if session in taken:
                taken[session].update(ids)
            else:
                taken[session] = set(ids)
            if len(tasks) == 1:
                self._dispatch(tasks[0], self.gpus[key], now)
            else:
                self._dispatch_bundle(tasks, self.gpus[key], now)
        for session, ids in taken.items():
            queue = self.pending[session]
            while queue and queue[0] in ids:  # the usual case: a prefix left
                ids.discard(queue.popleft())
            if ids:
                self.pending[session] = deque(t for t in queue if t not in ids)

    def _batch_size(self, session: str, queue: deque[str]) -> int:
        """Tasks per message for a session's queue: enough of them to fill `batch_seconds`
        at their algorithm's measured run time (1 until a run time is known), or, when the
        backlog is deeper than that fills on every message slot of the GPUs it may use, the
        backlog spread evenly over those slots, up to `batch_backlog_seconds` a message (its
        tasks wait anyway; fewer, bigger messages spare each GPU the gap between two); for a
        batch-capable algorithm, its largest call, or as many as its budget allows at the
        measured time per input."""
        algorithm = self.tasks[queue[0]].algorithm
        ran = self.runtime.get(algorithm)
        if self.policy.batch_max <= 1:
            return 1
        capable = self.batching.get(algorithm) if self.batching else None
        if capable is not None:
            most, budget = min(capable[0], self.policy.batch_max), capable[1]
            if budget is not None and ran is not None:
                most = min(most, int(budget / max(ran, 1e-6)))
            return max(1, most)
        if ran is None:
            return 1
        ran = max(ran, 1e-4)
        slots = self.policy.depth * max(1, len(self.serving.get(session, NO_GPUS))
                                        + len(self.serving.get(None, NO_GPUS)))
        most = max(self.policy.batch_seconds / ran,
                   min(len(queue) / slots, self.policy.batch_backlog_seconds / ran))
        return max(1, min(self.policy.batch_max, int(most)))

    def _enqueue(self, task: Task) -> None:
        """At the back of its session's queue (a gang: of its gang queue)."""
        if task.gpus > 1:
            self._queue_gang(task)
            return
        queue = self.pending.get(task.session)
        if queue is None:  # not setdefault: a deque per call costs more than the task
            queue = self.pending[task.session] = deque()
        queue.append(task.id)

    def _dispatch(self, task: Task, gpu: Gpu, now: float, ahead: bool | None = None,
                  bundle: str | None = None, gang: list[int] | None = None) -> dict[str, Any]:
        """A new attempt on `gpu`; sent as its own message unless part of a bundle. A gang's
        attempt is sent to its lead GPU and names all of its GPUs."""
        number = len(task.attempts) + 1
        if number == 1:
            self.latencies.append(("route", now - task.submitted))
        urgent = task.id in self.urgent
        if ahead is None:
            ahead = bundle is None and urgent
        attempt = Attempt(f"{task.id}.a{number}", gpu.node, gpu.index, DISPATCHED, now, bundle=bundle,
                          urgent=ahead, gang=gang)
        task.attempts.append(attempt)
        task.current_attempt = attempt.id
        key = gpu.key
        if not gpu.outstanding:
            touch(self.gpu_seen, key, now)  # the silence clock starts with work
        gpu.outstanding.add(task.id)
        if bundle is None:
            self._occupy(gpu)
        else:
            self.bundle_of[task.id] = bundle
        self.live[task.session] += 1
        self._demand_changed()
        if urgent:
            self.urgent.discard(task.id)
            self.constraints.pop(task.id, None)
        elif self.constraints:
            self.constraints.pop(task.id, None)
        self._set_state(task, QUEUED)
        self._attempt_event(task, now, "dispatched", attempt)
        message = {"task_id": task.id, "attempt_id": attempt.id, "number": number,
                   "algorithm": task.algorithm, "args": task.args, "session": task.session,
                   "node": gpu.node, "gpu": gpu.index, "checkpoint": task.checkpoint_ref}
        if task.inputs:
            message["inputs"] = task.inputs
        if gang is not None:
            message["gpus"] = gang
        if bundle is None:
            self.fx.dispatches.append(Dispatch(gpu.key, message, attempt.id, ahead))
        return message

    def _dispatch_bundle(self, tasks: list[Task], gpu: Gpu, now: float) -> None:
        """Several tasks in one message (M11); each keeps its own attempt, fence and outcome."""
        first = tasks[0]
        bundle = f"{first.id}.a{len(first.attempts) + 1}+{len(tasks)}"
        messages = [self._dispatch(t, gpu, now, bundle=bundle) for t in tasks]
        self.bundle_left[bundle] = len(tasks)
        self._occupy(gpu)
        self.fx.dispatches.append(
            Dispatch(gpu.key, {"batch": messages, "node": gpu.node, "gpu": gpu.index}, bundle))

    def _occupy(self, gpu: Gpu) -> None:
        key = gpu.key
        self.busy[key] = self.busy.get(key, 0) + 1
        self._reindex(key)

    def _reindex(self, key: GpuKey) -> None:
        version, usable = self._usable_cache
        if version != self._topology:
            usable = self._usable_set()
        self.ready.put(key, self.plan.get(key), self.busy.get(key, 0), self.policy.depth,
                       key in usable and key in self.gpus and key not in self.reserved)

    def _reindex_all(self) -> None:
        self._ready_topology = self._topology
        for key in sorted(set(self.gpus) | set(self.plan) | set(self.ready.where)):
            self._reindex(key)

    def _release(self, task: Task, attempt: Attempt) -> None:
        """The attempt no longer occupies its GPU (called once per attempt that ends)."""
        if attempt.gang:
            self._release_gang(task, attempt)
        self.live[task.session] -= 1
        self._demand_changed()
        gpu = self.gpus.get((attempt.node, attempt.gpu))
        if gpu is not None:
            gpu.outstanding.discard(task.id)
        bundle = self.bundle_of.pop(task.id, None)
        if bundle is not None:
            left = self.bundle_left.pop(bundle, 1) - 1
            if left > 0:
                self.bundle_left[bundle] = left
                return  # the message still holds live members
        if gpu is not None:
            self._vacate(gpu.key)

    def _vacate(self, key: GpuKey) -> None:
        """One message fewer in flight on `key`."""
        n = self.busy.get(key, 1) - 1
        if n > 0:
            self.busy[key] = n
        else:
            self.busy.pop(key, None)
        self._reindex(key)

    def _usable_set(self) -> frozenset[GpuKey]:
        version, keys = self._usable_cache
        if version != self._topology:
            keys = frozenset(k for k in self.gpus if self._usable_uncached(k))
            self._usable_cache = (self._topology, keys)
        return keys

    def _usable(self, key: GpuKey) -> bool:
        return key in self._usable_set()

    def _usable_uncached(self, key: GpuKey) -> bool:
        node = self.node_health.get(key[0])
        health = self.gpu_health.get(key)
        return bool(node and node.usable and (health is None or health.usable)) and key[0] in self.nodes

    def _live_tasks(self) -> list[Task]:
        return [self.tasks[t] for g in self.gpus.values() for t in g.outstanding]

    def _back_in_line(self, task: Task, at: float, event: str | None = None, **fields: Any) -> None:
        """The task queues again, ahead of newer work and in submit order among its peers:
        after a move, a superseded or yielded attempt, a gang's local retry. Constraints on
        where it may go are set before."""
        task.current_attempt = None
        self._set_state(task, PENDING)
        self.urgent.add(task.id)
        if event is not None:
            self._event(task, at, event, **fields)
        if task.gpus > 1:
            self._queue_gang(task)  # gangs are taken oldest first in any case
            return
        queue = self.pending.setdefault(task.session, deque())
        index = next((i for i, t in enumerate(queue) if self.tasks[t].seq > task.seq), len(queue))
        queue.insert(index, task.id)
