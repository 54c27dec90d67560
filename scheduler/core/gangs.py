"""Gangs: tasks that need several GPUs of one node at once (command jobs with `gpus=N`).

A gang waits in its session's gang queue, oldest first. Each tick, before single-GPU
placement, the oldest gang reserves N usable GPUs of its session on one node
(`placement.reserve`): a reserved GPU takes no new message, and the messages queued there
that have not started are taken back, so the gang starts as soon as the tasks running on
its GPUs end. GPUs outside a reservation keep taking small tasks: backfill never delays a
reserved gang, and a stream of small tasks never starves it. The attempt goes to the
reserved GPU with the lowest index (the lead, whose worker starts the job) and holds all N
(`Attempt.gang`) until it ends.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter

from corral.scheduler import placement
from corral.scheduler.core.state import Gpu, GpuKey, touch
from corral.scheduler.records import DISPATCHED, PENDING, Attempt, Task

log = logging.getLogger("corral.scheduler")


class Gangs:
    def _init(self) -> None:
        self.gang_queue: dict[str, dict[str, None]] = {}  # session -> waiting gangs, oldest first
        self.reserved: dict[GpuKey, str] = {}  # GPU -> the gang it is held for (or runs)
        self.reservation: dict[str, list[GpuKey]] = {}  # waiting gang -> the GPUs it holds

    def _queue_gang(self, task: Task) -> None:
        self.gang_queue.setdefault(task.session, {})[task.id] = None
        self._demand_changed()

    def _gang_demand(self, session: str) -> int:
        return sum(self.tasks[t].gpus for t in self.gang_queue.get(session, ()) if t in self.tasks)

    def _route_gangs(self, now: float) -> None:
        waiting = sorted((t for q in self.gang_queue.values() for t in q), key=lambda t: self.tasks[t].seq
                         if t in self.tasks else 0)
        usable = self._usable_set()
        blocked: set[str] = set()  # nodes an older gang waits to take: younger ones keep off
        for task_id in waiting:
            task = self.tasks.get(task_id)
            if task is None or task.state != PENDING:
                self._unqueue_gang(task_id, task.session if task else None)
                continue
            keys = self.reservation.get(task_id)
            if keys is not None and any(k not in usable or k not in self.gpus for k in keys):
                self._unreserve(task_id)  # a GPU of it went out of service: choose again
                keys = None
            if keys is None:
                keys = self._reserve(task, now, blocked)
                if keys is None:
                    # Held up by GPUs other gangs hold: a younger gang must not take the
                    # ones that will free up on the nodes where this one fits.
                    blocked.update(self._fits_on(task, usable))
                    continue
            if not any(self.busy.get(k) for k in keys):
                self._start_gang(task, keys, now)

    def _candidates(self, task: Task, usable: frozenset[GpuKey]) -> list[GpuKey]:
        """The GPUs a gang may hold: its session's, and those no session holds (the
        allocator places GPUs with no regard to nodes: a session's may be spread thinner
        than a gang needs); usable, and none it must avoid."""
        rule = self.constraints.get(task.id)
        return [key for key in itertools.chain(self.serving.get(task.session, ()), self.serving.get(None, ()))
                if key in usable and key in self.gpus and not (rule is not None and key in rule.avoid_gpus)]

    def _fits_on(self, task: Task, usable: frozenset[GpuKey]) -> set[str]:
        """Nodes with enough of the gang's candidate GPUs, held by others or not."""
        count = Counter(key[0] for key in self._candidates(task, usable))
        return {node for node, n in count.items() if n >= task.gpus}

    def _reserve(self, task: Task, now: float, blocked: set[str]) -> list[GpuKey] | None:
        rule = self.constraints.get(task.id)
        free: dict[str, list[tuple[int, GpuKey]]] = {}
        for key in self._candidates(task, self._usable_set()):
            if key not in self.reserved and key[0] not in blocked:
                free.setdefault(key[0], []).append((self.busy.get(key, 0), key))
        keys = placement.reserve(task.gpus, free, rule.avoid_hosts if rule is not None else ())
        if keys is None:
            return None
        self.reservation[task.id] = keys
        for key in keys:
            self.reserved[key] = task.id
            self._reindex(key)
        self._event(task, now, "reserved", node=keys[0][0], gpus=[k[1] for k in keys])
        # Messages queued there and not started go elsewhere: the gang waits only for the
        # tasks already running on its GPUs.
        for key in keys:
            for other_id in sorted(self.gpus[key].outstanding, key=lambda t: self.tasks[t].seq):
                other = self.tasks[other_id]
                attempt = other.live_attempt
                if attempt is not None and attempt.state == DISPATCHED and not attempt.gang:
                    self._supersede(other, attempt, now, f"GPU {key[0]}:{key[1]} is reserved for "
                                                         f"the {task.gpus}-GPU task {task.id}")
        return keys

    def _start_gang(self, task: Task, keys: list[GpuKey], now: float) -> None:
        self.reservation.pop(task.id, None)
        self._unqueue_gang(task.id, task.session)
        lead = self.gpus[keys[0]]
        self._dispatch(task, lead, now, ahead=task.id in self.urgent, gang=[k[1] for k in keys])
        for key in keys[1:]:  # held by the gang: its outstanding work, until the attempt ends
            gpu = self.gpus[key]
            if not gpu.outstanding:
                touch(self.gpu_seen, key, now)
            gpu.outstanding.add(task.id)
            self._occupy(gpu)
        self.live[task.session] += len(keys) - 1

    def _release_gang(self, task: Task, attempt: Attempt) -> None:
        """The GPUs of a gang's attempt other than its lead are free again (the lead is
        released as any attempt's GPU is)."""
        assert attempt.gang
        self.live[task.session] -= len(attempt.gang) - 1
        for key in attempt.gpu_keys:
            if self.reserved.get(key) == task.id:
                del self.reserved[key]
            if key == (attempt.node, attempt.gpu):
                continue
            gpu = self.gpus.get(key)
            if gpu is None or task.id not in gpu.outstanding:
                continue
            gpu.outstanding.discard(task.id)
            self._vacate(key)

    def _unreserve(self, task_id: str) -> None:
        for key in self.reservation.pop(task_id, ()):
            if self.reserved.get(key) == task_id:
                del self.reserved[key]
                self._reindex(key)

    def _unqueue_gang(self, task_id: str, session: str | None) -> None:
        queue = self.gang_queue.get(session) if session is not None else None
        if queue is not None and queue.pop(task_id, 0) is None and not queue:
            del self.gang_queue[session]
        if task_id in self.reservation and (task_id not in self.tasks
                                            or self.tasks[task_id].state != PENDING):
            self._unreserve(task_id)
        self._demand_changed()

    def _held_gang(self, task: Task, attempt: Attempt) -> None:
        """Takeover: a live gang attempt holds its GPUs again."""
        assert attempt.gang
        for key in attempt.gpu_keys:
            self.reserved[key] = task.id
            if key != (attempt.node, attempt.gpu):
                self.gpus.setdefault(key, Gpu(*key)).outstanding.add(task.id)
        self.live[task.session] += len(attempt.gang) - 1
