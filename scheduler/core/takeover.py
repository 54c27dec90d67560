"""Takeover (M3, M6): a new leader rebuilds every piece of the core's state from etcd alone
(task records, the `done/` chunks of the dedup window, sessions, health, the plan), then
reconciles it against the registered nodes (`nodes_changed`). A takeover is a reconcile, not
a replay: a finished record still in etcd (the last leader died before it moved it) is simply
moved again."""

from __future__ import annotations

import heapq
from typing import Any

from corral.scheduler import gpu_health as gh
from corral.scheduler import node_health as nh
from corral.scheduler.core.state import Gpu
from corral.scheduler.records import PENDING, RUNNING, Task, retire, retired_state, unpack_done


class Takeover:
    def load(
        self,
        records: list[dict[str, Any]],
        sessions: dict[str, dict[str, Any]],
        gpu_health: dict[str, dict[str, Any]] | None = None,
        node_health: dict[str, dict[str, Any]] | None = None,
        now: float = 0.0,
        plan: dict[str, dict[str, Any]] | None = None,
        done: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Rebuild all state from etcd alone into a fresh Core; then feed it nodes_changed()."""
        assert not self.tasks, "load() fills a fresh Core"
        self.sessions = dict(sessions)
        for key, data in (gpu_health or {}).items():
            node, _, index = key.rpartition("/")
            self.gpu_health[(node, int(index))] = gh.GpuHealth.from_dict(data)
        self.suspect = {k for k, h in self.gpu_health.items() if h.streak}
        for name, data in (node_health or {}).items():
            self.node_health[name] = nh.NodeHealth.from_dict(data)
        for key, data in (plan or {}).items():
            node, _, index = key.rpartition("/")
            gpu_key = (node, int(index))
            self.plan[gpu_key] = data.get("session")
            self.serving.setdefault(data.get("session"), set()).add(gpu_key)
            self.plan_info[gpu_key] = data
            self.plan_generation = max(self.plan_generation, int(data.get("generation", 0)))
        loaded = sorted((Task.from_dict(r) for r in records), key=lambda t: t.seq)
        in_etcd = {task.id for task in loaded}
        for name, chunk in sorted((done or {}).items()):  # named by time: oldest first
            for task_id, summary in unpack_done(chunk).items():
                if task_id in in_etcd:
                    continue  # a rejected id submitted again: its record in etcd is the truth
                before = self.retired.pop(task_id, None)  # the later chunk's is the newer
                if before is not None:
                    self.counts[retired_state(before)] -= 1
                self.retired[task_id] = summary
                self.counts[retired_state(summary)] += 1
            self.chunks[name] = float(chunk.get("newest", 0.0))
        finished, linking = [], []
        for task in loaded:
            self.counts[task.state] += 1
            self.seq = max(self.seq, task.seq)
            if task.terminal:
                finished.append(task)
                continue
            self.tasks[task.id] = task
            if task.state == PENDING and task.waiting:
                linking.append(task)
            elif task.state == PENDING and (hold := _held_retry(task)) is not None:
                heapq.heappush(self.retry_due, (hold[0], task.seq, task.id, hold[1]))
            elif task.state == PENDING:
                self._enqueue(task)
                if task.attempts:
                    self.urgent.add(task.id)
                    self._constrain(task)
            elif (attempt := task.live_attempt) is not None:
                # Kept for now; nodes_changed() supersedes it if its GPU is not registered.
                gpu = self.gpus.setdefault((attempt.node, attempt.gpu), Gpu(attempt.node, attempt.gpu))
                gpu.outstanding.add(task.id)
                if attempt.gang:
                    self._held_gang(task, attempt)
                if attempt.bundle:
                    self.bundle_of[task.id] = attempt.bundle
                    self.bundle_left[attempt.bundle] = self.bundle_left.get(attempt.bundle, 0) + 1
                self.gpu_seen.setdefault((attempt.node, attempt.gpu), now)
                self.live[task.session] += 1
                self.node_health.setdefault(attempt.node, nh.NodeHealth(since=now))
                if attempt.state == RUNNING:
                    self.seen[task.id] = now
                    self._checkpoint_later(task.id, now)
        for key, gpu in self.gpus.items():  # a message per bundle, and per task outside one
            messages = {self.bundle_of.get(t, t) for t in gpu.outstanding}
            if messages:
                self.busy[key] = len(messages)
        for task in sorted(finished, key=lambda t: t.last_change):  # oldest first, as compact() reads
            self.retired[task.id] = retire(task)
            self.archiving[task.id] = task.to_dict()
        for task in linking:  # with every outcome known: wait, be queued, or be cancelled
            if self._link(task, now):
                self._enqueue(task)
        self._wake_dependents(now)


def _held_retry(task: Task) -> tuple[float, tuple[str, int]] | None:
    """A local retry that was waiting out its back-off when the last leader stopped."""
    last = task.events[-1] if task.events else None
    if last is None or last.get("event") != "retry-later" or task.current_attempt is not None:
        return None
    try:
        return float(last["until"]), (str(last["node"]), int(last["gpu"]))
    except (KeyError, TypeError, ValueError):
        return None
