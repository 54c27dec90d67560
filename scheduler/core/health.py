"""Nodes and GPUs: registrations (level-triggered), GPU health (M4) and node health (M5)
bookkeeping over the pure policies in `gpu_health.py` and `node_health.py`, and the
operator's quarantine, release, drain and undrain."""

from __future__ import annotations

import logging
from typing import Any

from corral.base.errors import is_device_error
from corral.scheduler import gpu_health as gh
from corral.scheduler import node_health as nh
from corral.scheduler.core.state import Gpu, GpuKey
from corral.scheduler.ingress import AdminRequest
from corral.scheduler.records import DISPATCHED, FAILED, SUCCEEDED, Attempt, Task, read_retired

log = logging.getLogger("corral.scheduler")


class Health:
    def _init(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}  # registrations, as the agents wrote them
        self.algorithms: set[str] = set()  # what the registered nodes' workers offer
        self.batching: dict[str, tuple[int, float | None]] = {}  # batch-capable: (most, budget)
        self.gpu_health: dict[GpuKey, gh.GpuHealth] = {}
        self.node_health: dict[str, nh.NodeHealth] = {}
        self.suspect: set[GpuKey] = set()  # GPUs with recent failures: one task per message
        self._topology = 0  # bumped whenever the set of usable GPUs may change

    def _rejoin(self, now: float) -> None:
        """Rejoining nodes that have been stable long enough are up again."""
        for name, health in [(n, h) for n, h in self.node_health.items() if h.state == nh.REJOINING]:
            after = nh.on_tick(health, now, self.policy.nodes)
            if after != health:
                self._set_node(name, after)
                log.info("node %s is %s again (%s)", name, after.state, after.reason)

    def _topology_changed(self) -> None:
        self._topology += 1
        self._demand_changed()

    def nodes_changed(self, nodes: dict[str, dict[str, Any]], now: float) -> None:
        """Level-triggered: make the GPU table and node health match the registrations."""
        self.nodes = nodes
        self._topology += 1
        self.algorithms = {a for n in nodes.values() for a in n.get("algorithms", [])}
        self.batching = read_batching(nodes)
        for name, info in nodes.items():
            before = self.node_health.get(name)
            if before is None or not before.registered:
                after = nh.on_registered(before or nh.NodeHealth(), now, first_time=before is None)
                self._set_node(name, after)
                log.info("node %s registered: %s", name, after.state)
            indexes = {int(g["index"]) for g in info.get("gpus", [])}
            for index in indexes:
                key = (name, index)
                if key not in self.gpus:
                    self.gpus[key] = Gpu(name, index)
                    self._demand_changed()
                if key not in self.plan:  # unplanned until the allocator gives it a session
                    self.plan[key] = None
                    self.serving.setdefault(None, set()).add(key)
                self.gpu_health.setdefault(key, gh.GpuHealth(since=now))
            for key in [k for k in self.gpus if k[0] == name and k[1] not in indexes]:
                self._drop_gpu(key, now, f"GPU {key[0]}:{key[1]} is no longer registered")
            for index, reason in (info.get("gpu_faults") or {}).items():
                self._gpu_signal((name, int(index)), str(reason), now)
        for name, health in list(self.node_health.items()):
            if name not in nodes and health.registered:
                after = nh.on_lost(health, now, self.policy.nodes)
                self._set_node(name, after)
                log.warning("node %s lost (%s)", name, after.reason)
                self._note(now, "node_lost", str(after.reason), node=name)
                for key in [k for k in self.gpus if k[0] == name]:
                    self._drop_gpu(key, now, f"node {name} was lost")

    def admin(self, req: AdminRequest, now: float) -> None:
        if req.action.startswith("gpu."):
            key = (req.node, int(req.gpu or 0))
            health = self.gpu_health.get(key, gh.GpuHealth(since=now))
            if req.action == "gpu.quarantine":
                self._set_gpu_health(key, gh.quarantine(health, req.reason, now), now)
            else:
                self._set_gpu_health(key, gh.release(health, now), now)
            log.warning("GPU %s:%d %s by operator", *key, self.gpu_health[key].state)
            return
        health = self.node_health.get(req.node)
        if health is None:
            log.warning("admin %s for unknown node %s ignored", req.action, req.node)
            return
        after = nh.drain(health, now) if req.action == "node.drain" else nh.undrain(health, now)
        self._set_node(req.node, after)
        log.warning("node %s is %s by operator", req.node, after.state)
        if req.action == "node.drain":
            # Work not yet started there moves; running attempts checkpoint and move too,
            # unless the operator lets them finish there.
            if req.move:
                self._stop_running_on(req.node, f"node {req.node} drained", now)
            for key in [k for k in self.gpus if k[0] == req.node]:
                for task_id in sorted(self.gpus[key].outstanding, key=lambda t: self.tasks[t].seq):
                    attempt = self.tasks[task_id].live_attempt
                    if attempt is not None and attempt.state == DISPATCHED:
                        self._supersede(self.tasks[task_id], attempt, now, f"node {req.node} drained")

    def _gpu_state(self, key: GpuKey) -> str:
        node = self.node_health.get(key[0])
        if node is not None and node.state != nh.UP:
            return node.state if node.state != nh.DRAINED else "draining"
        return self.gpu_health.get(key, gh.GpuHealth()).state

    def _gpu_succeeded(self, task: Task, attempt: Attempt, now: float) -> None:
        key = (attempt.node, attempt.gpu)
        health = self.gpu_health.get(key)
        if health is not None and health.streak:
            self._set_gpu_health(key, gh.on_success(health), now)
        if len(task.attempts) == 1:
            return
        # Its earlier failures elsewhere now count against those GPUs.
        for other in {(a.node, a.gpu) for a in task.attempts if a.state == FAILED} - {key}:
            h = self.gpu_health.get(other)
            if h is not None and any(f.task_id == task.id for f in h.streak):
                self._set_gpu_health(other, gh.evaluate(h, now, self.policy.quarantine_after,
                                                        self.verdicts(other)), now)

    def _gpu_failed(self, task: Task, key: GpuKey, device: bool, now: float) -> None:
        health = self.gpu_health.get(key, gh.GpuHealth(since=now))
        self._set_gpu_health(key, gh.on_failure(health, task.id, device, now,
                                                self.policy.quarantine_after, self.verdicts(key)), now)

    def _gpu_signal(self, key: GpuKey, reason: str, now: float) -> None:
        health = self.gpu_health.get(key, gh.GpuHealth(since=now))
        self._set_gpu_health(key, gh.on_signal(health, reason, now), now)

    def verdicts(self, key: GpuKey) -> gh.Verdicts:
        """What the tasks that failed on a GPU did elsewhere (retired ones too): whether its
        failures are its own. Public: the evidence a quarantine rests on."""
        gpu = f"{key[0]}/{key[1]}"  # as a retired task names GPUs

        def elsewhere(task_id: str, state: str) -> bool:
            task = self.tasks.get(task_id)
            if task is None:
                summary = self.retired.get(task_id)
                if summary is None:
                    return False
                retired = read_retired(summary)
                return any(g != gpu for g in (retired.succeeded_on if state == SUCCEEDED
                                              else retired.failed_on))
            return any(
                a.state == state and (a.node, a.gpu) != key
                and not (state == FAILED and is_device_error(a.error))
                for a in task.attempts)
        return gh.Verdicts(lambda t: elsewhere(t, SUCCEEDED), lambda t: elsewhere(t, FAILED))

    def _set_gpu_health(self, key: GpuKey, after: gh.GpuHealth, now: float) -> None:
        before = self.gpu_health.get(key)
        if after == before:
            return
        if before is None or before.usable != after.usable:
            self._topology_changed()
        self.gpu_health[key] = after
        if after.streak:
            self.suspect.add(key)
        else:
            self.suspect.discard(key)
        self.fx.gpu_health[key] = after.to_dict()
        if after.state == gh.QUARANTINED and (before is None or before.state != gh.QUARANTINED):
            log.warning("GPU %s:%d quarantined: %s", key[0], key[1], after.reason)
            self._note(now, "quarantine", str(after.reason), node=key[0], gpu=key[1])
            gpu = self.gpus.get(key)
            for task_id in sorted(gpu.outstanding if gpu else (), key=lambda t: self.tasks[t].seq):
                attempt = self.tasks[task_id].live_attempt
                if attempt is not None:
                    self._supersede(self.tasks[task_id], attempt, now, f"GPU {key[0]}:{key[1]} quarantined")

    def _set_node(self, name: str, after: nh.NodeHealth) -> None:
        if self.node_health.get(name) != after:
            self._topology_changed()
            self.node_health[name] = after
            self.fx.node_health[name] = after.to_dict()

    def _drop_gpu(self, key: GpuKey, now: float, why: str) -> None:
        gpu = self.gpus.pop(key)
        self.busy.pop(key, None)
        self.ready.put(key, None, 0, self.policy.depth, False)
        self._topology_changed()
        for task_id in sorted(gpu.outstanding, key=lambda t: self.tasks[t].seq):
            attempt = self.tasks[task_id].live_attempt
            if attempt is not None:
                self._supersede(self.tasks[task_id], attempt, now, why)


def read_batching(nodes: dict[str, dict[str, Any]]) -> dict[str, tuple[int, float | None]]:
    """The batch-capable algorithms the nodes declare: name -> (most inputs per call,
    seconds per call at most); the smallest where nodes disagree, nothing that is malformed."""
    out: dict[str, tuple[int, float | None]] = {}
    for info in nodes.values():
        declared = info.get("batching")
        for name, spec in (declared.items() if isinstance(declared, dict) else ()):
            most = spec.get("max") if isinstance(spec, dict) else None
            budget = spec.get("budget") if isinstance(spec, dict) else None
            if type(most) is not int or most < 2 or (budget is not None and (
                    type(budget) not in (int, float) or not 0 < budget < 86400)):
                continue
            before = out.get(name)
            if before is None or most < before[0]:
                out[name] = (most, None if budget is None else float(budget))
    return out
