"""Sessions and the plan: which session each GPU serves (the allocator decides; this module
keeps its inputs and hands GPUs over), and warm-up of a session's algorithms on its GPUs."""

from __future__ import annotations

import logging
import math
from typing import Any

from corral.scheduler import allocator
from corral.scheduler.core.effects import Dispatch
from corral.scheduler.core.state import GpuKey
from corral.scheduler.ingress import Rejection, SessionRequest
from corral.scheduler.records import DISPATCHED

log = logging.getLogger("corral.scheduler")

SHARED_RESERVE = 1  # GPUs fixed workers leave to sharing: idle sessions cannot starve others


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
        if not due or (now < self._next_allocation and not (self._plan_dirty and self._starved())):
            return
        self._next_allocation = now + self.policy.allocate_every
        self._plan_dirty = False
        usable = self._usable_set()
        if self._specs is None:
            self._specs = self._session_specs()
        specs = self._specs
        demand = {name: len(self.pending.get(name, ())) + self.live.get(name, 0)
                  + (self._gang_demand(name) if self.gang_queue else 0) for name in self.sessions}
        if self._planned_topology != self._topology:  # out of service: no session
            self._planned_topology = self._topology
            gone = sorted(k for k, owner in self.plan.items() if owner is not None and k not in usable)
            if gone:
                self.plan_generation += 1
                for key in gone:
                    self._assign_gpu(key, None, now)
        changed, self.alloc_state = self.allocate_fn(
            usable, specs, demand, self.plan, self.busy, self.alloc_state, now,
            self.policy.idle_grace, self.serving, SHARED_RESERVE)
        if not changed:
            return
        self.plan_generation += 1
        for key in sorted(changed):
            self._assign_gpu(key, changed[key], now)

    def _starved(self) -> bool:
        """Whether a GPU that no session holds is idle while a session queues work and has
        no idle GPU of its own: then the allocator runs at once rather than after its
        interval, or that work would wait behind a running task of its session's GPUs
        while the idle GPU stays idle (two tasks submitted a few ms apart, say)."""
        return bool(self.ready.idle.get(None)) and any(
            queue and not self.ready.idle.get(session) for session, queue in self.pending.items())

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

    def _session_specs(self) -> list[allocator.SessionSpec]:
        """The allocator's view of the sessions, in allocation order (its sorts then cost
        little); a record written by an older version may hold anything, so numbers are
        read defensively."""
        specs = []
        for name, rec in self.sessions.items():
            max_workers = rec.get("max_workers")
            specs.append(allocator.SessionSpec(
                name, int(_number(rec, "fixed_workers", 0)) if rec.get("state") == "open" else 0,
                max(_number(rec, "share_ratio", 1.0), 1e-6),
                int(max_workers) if type(max_workers) is int else None,
                int(_number(rec, "priority", 0)), _number(rec, "opened", 0.0),
                keeps_surplus=rec.get("state") == "open"))
        return sorted(specs, key=lambda s: s.order)

    def _session(self, req: SessionRequest, now: float) -> None:
        """Open, join, update or close a session. Opening an open session with other
        settings is refused unless the request asks to update; a session is closed by the
        client that opened it, or by an operator's forced close."""
        current = self.sessions.get(req.name)
        is_open = current is not None and current.get("state") == "open"
        if req.action == "close":
            if not is_open:
                return
            owner = current.get("owner")
            if owner and owner != req.owner and not req.force:
                log.info("session %s stays open: %s opened it, %s only leaves it", req.name, owner, req.owner)
                return
            self._write_session({**current, "state": "closed", "closed": now})
            return
        wanted = {"fixed_workers": req.fixed_workers, "share_ratio": req.share_ratio,
                  "max_workers": req.max_workers, "priority": req.priority,
                  "algorithms": list(req.algorithms)}
        if is_open and not req.update and not current.get("auto"):
            differs = sorted(k for k, v in wanted.items() if current.get(k) != v)
            if differs:
                self._reject(Rejection(req.request_id, f"session {req.name} is open with other settings "
                                       f"({', '.join(f'{k}={current.get(k)!r}' for k in differs)}); "
                                       "open it with update=True to change them"), now)
            return  # the same settings: this client joins it
        record = {"name": req.name, **wanted, "state": "open",
                  "opened": current.get("opened", now) if is_open else now,
                  "owner": (current.get("owner") if is_open and not current.get("auto") else req.owner)}
        if req.auto:
            record["auto"] = True
        gpus = len(self._usable_set())
        room = allocator.fixed_room(gpus, SHARED_RESERVE)
        if req.fixed_workers > room:
            record["note"] = (f"fixed_workers {req.fixed_workers} is more than the {gpus} GPU(s) of the "
                              f"cluster can hold for fixed workers ({room}: one GPU stays shared); "
                              "it gets at most that")
        self._write_session(record)

    def _write_session(self, record: dict[str, Any]) -> None:
        self.sessions[record["name"]] = record
        self._specs = None
        self.fx.sessions[record["name"]] = record
        self._demand_changed()


def _number(record: dict[str, Any], key: str, default: float) -> float:
    """A finite number from a session record (one written by an older version may hold
    anything), else the default."""
    value = record.get(key, default)
    if type(value) in (int, float) and math.isfinite(value) and abs(value) < 1e12:
        return value
    return default
