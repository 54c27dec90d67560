"""Sessions and the plan: which session each GPU serves (the allocator decides; this module
keeps its inputs and hands GPUs over), and warm-up of a session's algorithms on its GPUs."""

from __future__ import annotations

import logging
from typing import Any

from corral.scheduler import allocator
from corral.scheduler.core.effects import Dispatch
from corral.scheduler.core.state import GpuKey
from corral.scheduler.ingress import SessionRequest
from corral.scheduler.records import DISPATCHED

log = logging.getLogger("corral.scheduler")


class Planning:
    def _init(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.plan: dict[GpuKey, str | None] = {}
        self.serving: dict[str | None, set[GpuKey]] = {}  # the plan inverted: session -> GPUs
        self.plan_info: dict[GpuKey, dict[str, Any]] = {}  # generation, warm algorithms
        self.plan_generation = 0
        self.alloc_state = allocator.AllocState()
        self.allocate_fn = allocator.changes  # the simulator wraps it to time each run
        self._specs: list[allocator.SessionSpec] | None = None  # the allocator's view of sessions
        self._next_allocation = 0.0
        self._plan_dirty = True
        self._planned_topology = -1  # the topology the plan last dropped unusable GPUs for

    def _demand_changed(self) -> None:
        """The allocator's inputs changed (demand, sessions, usable GPUs): run it again."""
        self._plan_dirty = True

    def _allocate(self, now: float) -> None:
        """Run the allocator when its inputs changed (or a grace period may have ended)."""
        due = self._plan_dirty or self.alloc_state.surplus_since
        if not due or now < self._next_allocation:
            return
        self._next_allocation = now + self.policy.allocate_every
        self._plan_dirty = False
        if self._specs is None:  # in allocation order: the allocator's sorts then cost little
            self._specs = sorted((
                allocator.SessionSpec(
                    name, int(rec.get("fixed_workers", 0)) if rec.get("state") == "open" else 0,
                    float(rec.get("share_ratio", 1.0)), rec.get("max_workers"),
                    int(rec.get("priority", 0)), float(rec.get("opened", 0.0)))
                for name, rec in self.sessions.items()), key=lambda s: s.order)
        specs = self._specs
        demand = {name: len(self.pending.get(name, ())) + self.live.get(name, 0) for name in self.sessions}
        usable = self._usable_set()
        if self._planned_topology != self._topology:  # out of service: no session
            self._planned_topology = self._topology
            gone = sorted(k for k, owner in self.plan.items() if owner is not None and k not in usable)
            if gone:
                self.plan_generation += 1
                for key in gone:
                    self._assign_gpu(key, None, now)
        changed, self.alloc_state = self.allocate_fn(
            usable, specs, demand, self.plan, self.busy, self.alloc_state, now,
            self.policy.idle_grace, self.serving)
        if not changed:
            return
        self.plan_generation += 1
        for key in sorted(changed):
            self._assign_gpu(key, changed[key], now)

    def _assign_gpu(self, key: GpuKey, session: str | None, now: float) -> None:
        before = self.plan.get(key)
        self.plan[key] = session
        self.serving.get(before, set()).discard(key)
        self.serving.setdefault(session, set()).add(key)
        self._reindex(key)
        info = {"session": session, "generation": self.plan_generation, "since": now, "warm": []}
        self.plan_info[key] = info
        self.fx.plans[key] = info
        log.info("plan: GPU %s:%d %s -> %s", key[0], key[1], before, session)
        gpu = self.gpus.get(key)
        if gpu is None:
            return
        # Hand over gracefully: the running attempt finishes; queued ones of others move.
        for task_id in sorted(gpu.outstanding, key=lambda t: self.tasks[t].seq):
            task = self.tasks[task_id]
            attempt = task.live_attempt
            if task.session != session and attempt is not None and attempt.state == DISPATCHED:
                self._supersede(task, attempt, now, f"GPU {key[0]}:{key[1]} went to session {session}")
        algorithms = (self.sessions.get(session or "", {}) or {}).get("algorithms") or []
        if session is not None and algorithms:
            warm_id = f"warm-{key[0]}-{key[1]}-{self.plan_generation}"
            self.fx.dispatches.append(Dispatch(
                key, {"session": session, "algorithms": list(algorithms), "node": key[0], "gpu": key[1],
                      "generation": self.plan_generation},
                warm_id, urgent=True, warm=True))

    def _warmed(self, event: dict[str, Any]) -> None:
        key = (str(event.get("node")), int(event.get("gpu", -1)))
        info = self.plan_info.get(key)
        if info is None or info.get("generation") != event.get("generation"):
            return  # the GPU has moved on since
        info = {**info, "warm": list(event.get("algorithms") or []), "warmed": event.get("time")}
        self.plan_info[key] = info
        self.fx.plans[key] = info

    def _session(self, req: SessionRequest, now: float) -> None:
        record = {
            "name": req.name, "fixed_workers": req.fixed_workers, "share_ratio": req.share_ratio,
            "max_workers": req.max_workers, "priority": req.priority,
            "algorithms": list(req.algorithms), "state": "open" if req.action == "open" else "closed",
            "opened": self.sessions.get(req.name, {}).get("opened", now),
        }
        self.sessions[req.name] = record
        self._specs = None
        self.fx.sessions[req.name] = record
        self._demand_changed()
