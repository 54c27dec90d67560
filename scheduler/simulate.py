"""The scale simulator: the real scheduler core against simulated nodes, GPUs, tasks and
faults, on a simulated clock, with no I/O.

Every decision is made by the same code the service runs (Core: allocator, placement,
retry, quarantine and node policies, event fold); the simulator only plays the world:
GPU workers as FIFOs that run attempts for a task's duration and report started /
succeeded / failed, node leases that lapse
and come back, faulty GPUs that fail everything. It measures the core's routing
decisions per second of CPU, the allocator's time per run, the etcd writes the run would
cause, and checks the chaos invariants over the simulated history.
"""

from __future__ import annotations

import gc
import heapq
import random
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from corral.base.keys import Keys
from corral.scheduler import allocator, heap
from corral.scheduler.core import Core, Policy
from corral.scheduler.ingress import SessionRequest, Submission
from corral.scheduler.node_health import NodePolicy
from corral.scheduler.store import encode, etcd_writes

KEYS = Keys("sim")

DEVICE = {"type": "SimulatedGpuFault", "message": "CUDA error: an illegal memory access"}
APP = {"type": "ValueError", "message": "simulated task error"}
HEARTBEAT = 5.0  # seconds between a running attempt's heartbeats (the core's limit is 10)


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 10
    gpus_per_node: int = 8
    sessions: int = 5
    tasks: int = 10_000
    faults: float = 0.0  # rate: share of attempts failing, of GPUs faulty, of nodes lost
    seed: int = 1
    task_seconds: float = 1.0
    tick: float = 0.05
    arrival_seconds: float = 30.0  # tasks arrive over this span


@dataclass
class SimResult:
    config: SimConfig
    dispatches: int = 0
    core_seconds: float = 0.0
    route_seconds: float = 0.0  # of which in routing (allocator and placement included)
    alloc_ms: list[float] = field(default_factory=list)
    writes: int = 0
    transactions: int = 0
    etcd_bytes: int = 0  # bytes of keys and values the run would write to etcd
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    quarantined: int = 0
    nodes_lost: int = 0

    def figures(self) -> dict[str, Any]:
        alloc = sorted(self.alloc_ms) or [0.0]
        return {
            "nodes": self.config.nodes, "gpus": self.config.nodes * self.config.gpus_per_node,
            "sessions": self.config.sessions, "tasks": self.config.tasks,
            "arrival_seconds": self.config.arrival_seconds,
            "faults": self.config.faults, "seed": self.config.seed,
            "routing_decisions": self.dispatches,
            "decisions_per_second": self.dispatches / max(self.core_seconds, 1e-9),
            "core_seconds": self.core_seconds,
            "routing_decisions_per_second": self.dispatches / max(self.route_seconds, 1e-9),
            "routing_seconds": self.route_seconds,
            "allocator_runs": len(self.alloc_ms),
            "allocator_p50_ms": statistics.median(alloc),
            "allocator_p99_ms": alloc[min(len(alloc) - 1, int(0.99 * len(alloc)))],
            "etcd_writes_per_second": self.writes / max(self.sim_seconds, 1e-9),
            "etcd_transactions_per_second": self.transactions / max(self.sim_seconds, 1e-9),
            "etcd_bytes_per_task": self.etcd_bytes / max(self.config.tasks, 1),
            "simulated_seconds": self.sim_seconds, "wall_seconds": self.wall_seconds,
            "outcomes": dict(self.outcomes), "gpus_quarantined": self.quarantined,
            "nodes_lost": self.nodes_lost, "invariants_hold": not self.violations,
            "violations": self.violations[:10],
        }


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        # No simulated task saves checkpoints; the backlog is the point of the run, so the
        # door admission keeps (CORRAL_MAX_LIVE_TASKS) is as wide as the run.
        self.core = Core(Policy.from_settings(nodes=NodePolicy(stable_after=10.0), checkpoint_every=0.0,
                                              max_live=max(config.tasks + 1, 100_000)), "sim")
        self.core.allocate_fn = self._timed_allocate
        self._route = self.core.route
        self.core.route = self._timed_route  # type: ignore[method-assign]
        self.result = SimResult(config)
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.fifo: dict[tuple[str, int], deque[dict[str, Any]]] = {}
        self.busy_until: dict[tuple[str, int], float] = {}
        self.fenced: set[str] = set()
        self.faulty: set[tuple[str, int]] = set()
        self.nodes = {f"n{i:04d}": {"gpus": [{"index": g} for g in range(config.gpus_per_node)],
                                    "algorithms": ["corral.echo"]} for i in range(config.nodes)}
        self.live_nodes = dict(self.nodes)
        self.expected: set[str] = set()
        self.quarantined_at: dict[tuple[str, int], float] = {}

    # ------------------------------------------------------------ plumbing

    def _timed_allocate(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = allocator.changes(*args)
        self.result.alloc_ms.append((time.perf_counter() - t0) * 1000)
        return out

    def _timed_route(self, now: float) -> None:
        t0 = time.perf_counter()
        self._route(now)
        self.result.route_seconds += time.perf_counter() - t0

    def _at(self, when: float, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, kind, payload))

    def _core(self, fn: Any, *args: Any) -> None:
        t0 = time.perf_counter()
        fn(*args)
        self.result.core_seconds += time.perf_counter() - t0

    # ----------------------------------------------------------------- run

    def run(self) -> SimResult:
        c = self.c
        wall = time.perf_counter()
        thresholds = heap.tune()  # as the scheduler process runs the core
        gc.freeze()
        self._core(self.core.nodes_changed, self.nodes, 0.0)
        weights = [1.0 / (i + 1) for i in range(c.sessions)]
        for i in range(c.sessions):
            req = SessionRequest(f"s{i:03d}", "open", fixed_workers=self.rng.choice([0, 0, 1, 2, 4]),
                                 share_ratio=self.rng.choice([1.0, 2.0, 3.0, 5.0]))
            self._core(self.core.submit, req, 0.0, None)
        gpus = [(n, g) for n in self.nodes for g in range(c.gpus_per_node)]
        self.faulty = set(self.rng.sample(gpus, int(len(gpus) * c.faults)))
        for i in range(c.tasks):
            session = self.rng.choices(range(c.sessions), weights)[0]
            self._at(self.rng.uniform(0, c.arrival_seconds), "arrive", (f"t{i}", f"s{session:03d}"))
        for name in self.rng.sample(sorted(self.nodes), int(len(self.nodes) * c.faults)):
            lost_at = self.rng.uniform(1, c.arrival_seconds)
            self._at(lost_at, "node_lost", name)
            self._at(lost_at + 30.0, "node_back", name)
        now = 0.0
        while self.events or self._busy():
            now += c.tick
            while self.events and self.events[0][0] <= now:
                _, _, kind, payload = heapq.heappop(self.events)
                getattr(self, "_" + kind)(payload, now)
            self._core(self.core.tick, now)
            self._effects(now)
            if now > c.arrival_seconds + 3600:
                self.result.violations.append("simulation did not drain within an hour")
                break
        self.result.sim_seconds = now
        self.result.wall_seconds = time.perf_counter() - wall
        self._final_check()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        self.core.allocate_fn = allocator.changes  # unwrapped: no reference cycle is left
        vars(self.core).pop("route", None)
        return self.result

    def _busy(self) -> bool:
        return len(self.expected) > 0

    # -------------------------------------------------------------- world

    def _arrive(self, payload: tuple[str, str], now: float) -> None:
        task_id, session = payload
        self.expected.add(task_id)
        sub = Submission(task_id, "corral.echo", None, session, 1, {"local": 1, "hosts": 3})
        self._core(self.core.submit, sub, now, None)

    def _node_lost(self, name: str, now: float) -> None:
        self.live_nodes.pop(name, None)
        self.result.nodes_lost += 1
        for key in [k for k in self.fifo if k[0] == name]:
            self.fifo[key].clear()  # its workers are gone with it
        self._core(self.core.nodes_changed, dict(self.live_nodes), now)

    def _node_back(self, name: str, now: float) -> None:
        self.live_nodes[name] = self.nodes[name]
        self._core(self.core.nodes_changed, dict(self.live_nodes), now)

    def _effects(self, now: float) -> None:
        fx = self.core.take_effects()
        if fx.writes:
            self.result.writes += fx.writes
            self.result.transactions += 1
            self.result.etcd_bytes += sum(len(k) + (0 if v is None else len(encode(v)))
                                          for k, v in etcd_writes(fx, KEYS).items())
        while (batch := self.core.archive_batch(now)) is not None:  # finished: to history
            self.result.writes += len(batch.records) + 1
            self.result.transactions += 1
            self.result.etcd_bytes += len(KEYS.done(batch.name)) + len(encode(batch.chunk)) + sum(
                len(KEYS.task(r["id"])) for r in batch.records)
            self._core(self.core.archived, batch)
        self.fenced.update(fx.fences)
        for d in fx.dispatches:
            if d.warm:
                continue
            key = d.gpu
            fifo = self.fifo.setdefault(key, deque())
            for msg in d.message.get("batch") or [d.message]:  # a batch runs in order (M11)
                if key in self.quarantined_at:
                    self.result.violations.append(f"attempt {msg['attempt_id']} sent to quarantined {key}")
                self.result.dispatches += 1
                if d.urgent:  # ahead of what waits there, as its priority puts it
                    fifo.appendleft(msg)
                else:
                    fifo.append(msg)
            self._start_next(key, now)

    def _start_next(self, key: tuple[str, int], now: float) -> None:
        if self.busy_until.get(key, 0.0) > now or key[0] not in self.live_nodes:
            return
        queue = self.fifo.get(key)
        while queue:
            msg = queue.popleft()
            if msg["attempt_id"] in self.fenced:
                continue  # the worker's fence: a superseded attempt does not run
            ends = now + self.rng.expovariate(1.0 / self.c.task_seconds)
            self.busy_until[key] = ends
            self._at(now, "report", ("started", msg, None))
            for beat in range(1, int((ends - now) / HEARTBEAT) + 1):  # as a worker's beat thread
                self._at(now + beat * HEARTBEAT, "report", ("heartbeat", msg, None))
            if key in self.faulty:
                self._at(ends, "report", ("failed", msg, DEVICE))
            elif self.rng.random() < self.c.faults:
                self._at(ends, "report", ("failed", msg, APP))
            else:
                self._at(ends, "report", ("succeeded", msg, None))
            return

    def _report(self, payload: tuple[str, dict[str, Any], Any], now: float) -> None:
        kind, msg, error = payload
        key = (msg["node"], msg["gpu"])
        if key[0] not in self.live_nodes:
            return  # the node died with the attempt
        event = {"kind": kind, "task_id": msg["task_id"], "attempt_id": msg["attempt_id"],
                 "node": key[0], "gpu": key[1], "time": now}
        if kind == "succeeded":
            event["result_ref"] = f"r:{msg['attempt_id']}"
        elif kind == "failed":
            event["error"] = error
        self._core(self.core.status, event, now, None)
        if kind in ("succeeded", "failed"):
            self.busy_until[key] = now
            self._settle(msg["task_id"], now)
            health = self.core.gpu_health.get(key)
            if health is not None and health.state == "quarantined":
                self.quarantined_at.setdefault(key, now)
            self._start_next(key, now)

    def _settle(self, task_id: str, now: float) -> None:
        task = self.core.tasks.get(task_id)
        if task is None or not task.terminal:
            return
        wins = sum(1 for a in task.attempts if a.state == "SUCCEEDED")
        if wins > 1:
            self.result.violations.append(f"task {task_id} has {wins} recorded outcomes")
        self.result.outcomes[task.state] += 1
        self.expected.discard(task_id)
        self._core(self.core.forget, task_id)  # the leader retires it too: its CPU counts

    def _final_check(self) -> None:
        self.result.quarantined = len(self.quarantined_at)
        if self.expected:
            self.result.violations.append(f"{len(self.expected)} task(s) never reached a terminal state")
        total = sum(self.result.outcomes.values())
        if total != self.c.tasks:
            self.result.violations.append(f"{total} terminal outcomes for {self.c.tasks} tasks")
        wrongly = [k for k in self.quarantined_at if k not in self.faulty]
        if self.c.faults == 0 and wrongly:
            self.result.violations.append(f"healthy GPUs quarantined: {wrongly[:5]}")


def simulate(config: SimConfig) -> dict[str, Any]:
    return Simulation(config).run().figures()
