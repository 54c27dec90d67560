"""The scheduler's state machine: plain data in, effects out, no I/O.

The service feeds it ingress messages, status events, node snapshots and ticks, in
order, from one thread. Each input mutates the in-memory state and queues effects:
etcd writes (flushed in one fenced transaction per tick), GPU-queue publishes and
message acks, which the shell performs only after the writes have committed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from corral.base.errors import is_device_error
from corral.base.keys import NORMAL, RUN_TASK, URGENT, WARM_TASK, Keys, gpu_queue
from corral.scheduler import allocator, placement, retry
from corral.scheduler import gpu_health as gh
from corral.scheduler import node_health as nh
from corral.scheduler.ingress import AdminRequest, Rejection, SessionRequest, Submission
from corral.scheduler.records import (
    CANCELLED,
    DISPATCHED,
    FAILED,
    PENDING,
    QUEUED,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    SUPERSEDED,
    TASK_STATES,
    TERMINAL,
    Attempt,
    Retired,
    Task,
    read_retired,
    retire,
)

log = logging.getLogger("corral.scheduler")

GpuKey = tuple[str, int]
NO_GPUS: frozenset[GpuKey] = frozenset()
MAX_EVENTS = 200
LAZY_WRITE = 1.0  # seconds a RUNNING transition may wait to be written with the next change
RETIRE_AFTER = 60.0  # seconds a finished task stays whole in memory before it is retired
OVERTAKEN_AFTER = 1.0  # seconds between two sends to one GPU that no clock skew reorders


@dataclass(frozen=True)
class Policy:
    depth: int = 2
    quarantine_after: int = 3
    heartbeat_timeout: float = 10.0
    idle_grace: float = 2.0  # a shrinking session keeps its surplus GPUs this long
    allocate_every: float = 0.05  # seconds between allocator runs while demand changes
    task_retention: float = 86400.0  # terminal task records are deleted after this long
    batch_max: int = 32  # most tasks in one GPU-queue message (M11); 1 turns batching off
    batch_seconds: float = 0.05  # work one message should carry, by the measured run times
    checkpoint_every: float = 0.0  # ask running tasks for a checkpoint this often (0: never)
    nodes: nh.NodePolicy = field(default_factory=nh.NodePolicy)


@dataclass(slots=True)
class Gpu:
    node: str
    index: int
    outstanding: set[str] = field(default_factory=set)  # task ids with a live attempt here
    key: GpuKey = ("", 0)
    queue: str = ""  # its Celery queue

    def __post_init__(self) -> None:
        self.key = (self.node, self.index)
        self.queue = gpu_queue(self.node, self.index)


@dataclass
class Publish:
    queue: str
    message: dict[str, Any]
    priority: int = NORMAL
    task: str = RUN_TASK
    id: str = ""


@dataclass
class Effects:
    writes: dict[str, Any] = field(default_factory=dict)  # etcd key -> value (None deletes)
    tasks: dict[str, Task | None] = field(default_factory=dict)  # task records to write (None deletes)
    fences: list[str] = field(default_factory=list)  # attempt ids to mark superseded
    unfences: list[str] = field(default_factory=list)  # attempt ids of deleted records: fences go
    checkpoint_requests: list[str] = field(default_factory=list)  # task ids asked for a checkpoint
    stale_checkpoints: list[str] = field(default_factory=list)  # replaced ones, deleted once written
    publishes: list[Publish] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.writes or self.tasks or self.fences or self.publishes or self.acks
                    or self.unfences or self.checkpoint_requests or self.stale_checkpoints)

    def all_writes(self, keys: Keys) -> dict[str, Any]:
        """Every etcd write, task records under their keys."""
        out = dict(self.writes)
        for task_id, task in self.tasks.items():
            out[keys.task(task_id)] = task
        return out


class Core:
    def __init__(self, keys: Keys, policy: Policy | None = None, writer: str = "") -> None:
        self.keys = keys
        self.writer = writer  # recorded in every event: which replica decided it
        self.policy = policy or Policy()
        self.tasks: dict[str, Task] = {}  # live ones, and those finished in the last minute
        self.retired: dict[str, Retired] = {}  # finished and written; oldest first
        self._ending: deque[str] = deque()  # finished and still whole, oldest first
        self.pending: dict[str, deque[str]] = {}
        self.constraints: dict[str, placement.Constraint] = {}
        self.urgent: set[str] = set()
        self.waiting: dict[str, set[str]] = {}  # upstream task id -> tasks waiting for it (M9)
        self._ended_upstream: list[str] = []  # upstream tasks that ended since the last tick
        self.gpus: dict[GpuKey, Gpu] = {}
        self.gpu_health: dict[GpuKey, gh.GpuHealth] = {}
        self.node_health: dict[str, nh.NodeHealth] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.algorithms: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.seen: dict[str, float] = {}  # task id -> last sign of life of its RUNNING attempt
        self.checkpoint_due: dict[str, float] = {}  # RUNNING task -> when to ask for a checkpoint
        self.gpu_seen: dict[GpuKey, float] = {}  # last word from a GPU's worker, or first work given
        self.seq = 0
        self.fx = Effects()
        self.lazy: dict[str, float] = {}  # task id -> when its deferred write is due
        self.plan: dict[GpuKey, str | None] = {}
        self.serving: dict[str | None, set[GpuKey]] = {}  # the plan inverted: session -> GPUs
        self._specs: list[allocator.SessionSpec] | None = None  # the allocator's view of sessions
        self.plan_info: dict[GpuKey, dict[str, Any]] = {}  # generation, warm algorithms
        self.plan_generation = 0
        self.alloc_state = allocator.AllocState()
        self.live: Counter[str] = Counter()  # session -> tasks with a live attempt
        self._next_allocation = 0.0
        self._plan_dirty = True
        self.allocate_fn = allocator.changes  # the simulator wraps it to time each run
        self._planned_topology = -1  # the topology the plan last dropped unusable GPUs for
        self.busy: dict[GpuKey, int] = {}  # messages in flight, of GPUs that have any
        self.bundle_of: dict[str, str] = {}  # task id -> its multi-task message (M11)
        self.bundle_left: dict[str, int] = {}  # such a message -> its members still live
        self.runtime: dict[str, float] = {}  # algorithm -> moving average of its run seconds
        self.suspect: set[GpuKey] = set()  # GPUs with recent failures: one task per message
        self.ready = _Ready()  # GPUs that can take a message, by session: routing's index
        self._ready_topology = -1
        self._topology = 0  # bumped whenever the set of usable GPUs may change
        self._usable_cache: tuple[int, frozenset[GpuKey]] = (-1, frozenset())
        self._next_liveness_check = 0.0
        self._next_compaction = 0.0

    # ------------------------------------------------------------------ inputs

    def load(
        self,
        records: list[dict[str, Any]],
        sessions: dict[str, dict[str, Any]],
        gpu_health: dict[str, dict[str, Any]] | None = None,
        node_health: dict[str, dict[str, Any]] | None = None,
        now: float = 0.0,
        plan: dict[str, dict[str, Any]] | None = None,
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
        finished, linking = [], []
        for task in sorted((Task.from_dict(r) for r in records), key=lambda t: t.seq):
            self.counts[task.state] += 1
            self.seq = max(self.seq, task.seq)
            if task.terminal:
                finished.append(task)
                continue
            self.tasks[task.id] = task
            if task.state == PENDING and task.waiting:
                linking.append(task)
            elif task.state == PENDING:
                self.pending.setdefault(task.session, deque()).append(task.id)
                if task.attempts:
                    self.urgent.add(task.id)
                    self._constrain(task)
            elif (attempt := task.live_attempt) is not None:
                # Kept for now; nodes_changed() supersedes it if its GPU is not registered.
                gpu = self.gpus.setdefault((attempt.node, attempt.gpu), Gpu(attempt.node, attempt.gpu))
                gpu.outstanding.add(task.id)
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
        for task in linking:  # with every outcome known: wait, be queued, or be cancelled
            if self._link(task, now):
                self.pending.setdefault(task.session, deque()).append(task.id)
        self._wake_dependents(now)

    def submit(self, parsed: Submission | SessionRequest | AdminRequest | Rejection, now: float,
               ack: Any) -> None:
        if type(parsed) is not Submission:  # noqa: E721 (the usual case, checked fast)
            if isinstance(parsed, SessionRequest):
                self._session(parsed, now)
            elif isinstance(parsed, AdminRequest):
                self.admin(parsed, now)
            elif isinstance(parsed, Rejection):
                self._reject(parsed, now)
        elif self._known(parsed.task_id):
            log.info("task %s already exists; duplicate submission ignored", parsed.task_id)
        elif parsed.after and (unknown := [u for u in parsed.after.values() if not self._known(u)]):
            self._reject(Rejection(parsed.task_id, f"'after' names unknown task(s) {', '.join(unknown)}: "
                                   "submit upstream tasks first", parsed.algorithm, parsed.session), now)
        else:
            self.seq += 1
            task = Task(parsed.task_id, parsed.session, parsed.algorithm, parsed.args, PENDING, now,
                        self.seq, parsed.gpus, parsed.retry)  # retry is never mutated: shared
            self.tasks[task.id] = task
            self.counts[PENDING] += 1
            self._plan_dirty = True
            task.events.append({"time": now, "event": "submitted", "by": self.writer})
            self.fx.tasks[task.id] = task
            if parsed.after is not None:
                task.after = parsed.after
            if task.after is None or self._link(task, now, fresh=True):  # else it waits (M9)
                queue = self.pending.get(task.session)
                if queue is None:  # not setdefault: a deque per call costs more than the task
                    queue = self.pending[task.session] = deque()
                queue.append(task.id)
            if task.session not in self.sessions:
                self._session(SessionRequest(task.session, "open"), now)
        if ack is not None:
            self.fx.acks.append(ack)

    def _known(self, task_id: str) -> bool:
        """Whether a task of this id exists (live, or finished and not yet compacted)."""
        return task_id in self.tasks or task_id in self.retired

    def status(self, event: dict[str, Any], now: float, ack: Any) -> None:
        if ack is not None:
            self.fx.acks.append(ack)
        node, gpu = event.get("node"), event.get("gpu", -1)
        if type(node) is str and type(gpu) is int:  # noqa: E721 (the usual case, checked fast)
            _touch(self.gpu_seen, (node, gpu), now)
        else:
            with contextlib.suppress(TypeError, ValueError):
                _touch(self.gpu_seen, (str(node), int(gpu)), now)
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
            if kind == "failed" and event.get("retry_as") and str(task_id) in self.retired:
                self.fx.fences.append(str(event["retry_as"]))  # a finished task's retry must not run
            log.info("status for an unknown task or attempt ignored: %s", _brief(event))
            return
        at = float(event.get("time") or now)
        if task.current_attempt != attempt.id or attempt.state not in (DISPATCHED, RUNNING):
            log.info("late %s of %s attempt %s ignored", event.get("kind"), task.id, attempt.id)
            if kind == "failed" and event.get("retry_as"):  # nor may the retry it queued run
                self._refuse_retry(task, attempt, str(event["retry_as"]), at)
            return
        if kind in ("heartbeat", "progress"):
            _touch(self.seen, task.id, now)
        elif kind == "checkpoint":
            _touch(self.seen, task.id, now)
            ref = event.get("checkpoint_ref")
            if isinstance(ref, str) and ref and ref != task.checkpoint_ref:
                if task.checkpoint_ref:  # deleted after the record naming its successor commits
                    self.fx.stale_checkpoints.append(task.checkpoint_ref)
                task.checkpoint_ref = ref
                self._checkpoint_later(task.id, now)
                self._attempt_event(task, at, "checkpoint", attempt)
        elif kind == "started":
            _touch(self.seen, task.id, now)
            if attempt.state == DISPATCHED:
                attempt.state, attempt.started = RUNNING, at
                self._set_state(task, RUNNING)
                self._checkpoint_later(task.id, now)
                # Deferred: a short task's next write (its outcome) carries this event too.
                self._attempt_event(task, at, "started", attempt, lazy_until=now + LAZY_WRITE)
                if attempt.urgent is False and (attempt.bundle is None
                                                or attempt.bundle.startswith(attempt.id + "+")):
                    self._overtaken(attempt, now)
        elif kind == "succeeded":
            attempt.state, attempt.ended = SUCCEEDED, at
            if attempt.started:
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
            self._failed(task, attempt, error, at, now, event.get("retry_as"))

    def nodes_changed(self, nodes: dict[str, dict[str, Any]], now: float) -> None:
        """Level-triggered: make the GPU table and node health match the registrations."""
        self.nodes = nodes
        self._topology += 1
        self.algorithms = {a for n in nodes.values() for a in n.get("algorithms", [])}
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
                    self._plan_dirty = True
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
            # Work not yet started there moves; running attempts finish.
            for key in [k for k in self.gpus if k[0] == req.node]:
                for task_id in sorted(self.gpus[key].outstanding, key=lambda t: self.tasks[t].seq):
                    attempt = self.tasks[task_id].live_attempt
                    if attempt is not None and attempt.state == DISPATCHED:
                        self._supersede(self.tasks[task_id], attempt, now, f"node {req.node} drained")

    def tick(self, now: float) -> None:
        if self._ended_upstream:
            self._wake_dependents(now)
        for name, health in [(n, h) for n, h in self.node_health.items() if h.state == nh.REJOINING]:
            after = nh.on_tick(health, now, self.policy.nodes)
            if after != health:
                self._set_node(name, after)
                log.info("node %s is %s again (%s)", name, after.state, after.reason)
        if now >= self._next_liveness_check:
            self._next_liveness_check = now + 0.5
            self._check_liveness(now)
            if self.checkpoint_due:
                self._ask_checkpoints(now)
            self._flush_lazy(now)
            self._retire(now - RETIRE_AFTER)
        if now >= self._next_compaction:
            self._next_compaction = now + 30.0
            self.compact(now)
        self.route(now)

    def route(self, now: float) -> None:
        self._allocate(now)
        pending = {s: q for s, q in self.pending.items() if q}
        if not pending:
            return
        special = sorted(
            (t for t in self.urgent | self.constraints.keys() if self.tasks[t].state == PENDING),
            key=lambda t: self.tasks[t].seq)
        # Only GPUs that can take something: those with room that serve a session with
        # pending work; for urgent tasks also their session's full GPUs (one slot beyond the
        # depth); for constrained ones, which may borrow, every GPU with room.
        usable, busy = self._usable_set(), self.busy
        if self._ready_topology != self._topology:
            self._reindex_all()
        batch = {s: n for s in pending if (n := self._batch_size(pending[s])) > 1} if self.runtime else {}
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
                    if k in usable and k not in load and (n := busy.get(k, 0)) < cap:
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

    def compact(self, now: float) -> int:
        """Delete the records of tasks finished longer ago than the retention period."""
        cutoff = now - self.policy.task_retention
        self._retire(cutoff)
        old = []
        for task_id, summary in self.retired.items():  # oldest first: read only what expired
            retired = read_retired(summary)
            if retired.ended >= cutoff:
                break
            old.append((task_id, retired))
        for task_id, retired in old:
            del self.retired[task_id]
            self.fx.tasks[task_id] = None
            # Its id may be used again (it is no longer known): its fences must not outlive it.
            self.fx.unfences.extend(retired.attempts)
            self.counts[retired.state] -= 1
        if old:
            log.info("compacted %d terminal task record(s) older than %.0f s", len(old),
                     self.policy.task_retention)
        return len(old)

    def _retire(self, before: float) -> None:
        """Retire the tasks that finished before `before` (their records long written)."""
        ending = self._ending
        while ending:
            task = self.tasks.get(ending[0])
            if task is not None and task.terminal:
                if task.last_change >= before:
                    return
                self.forget(task.id)
            ending.popleft()

    def forget(self, task_id: str) -> None:
        """Keep only the retired summary of a finished task (its record stays in etcd until
        the retention period ends); the simulator calls it as soon as a task settles."""
        task = self.tasks.get(task_id)
        if task is not None and task.terminal:
            del self.tasks[task_id]
            self.retired[task_id] = retire(task)
            for index in (self.lazy, self.seen, self.constraints, self.checkpoint_due):
                index.pop(task_id, None)
            self.urgent.discard(task_id)

    def take_effects(self) -> Effects:
        fx, self.fx = self.fx, Effects()
        return fx

    # ------------------------------------------------------------- summaries

    def summary(self) -> dict[str, Any]:
        running = Counter(t.session for t in self._live_tasks() if t.state == RUNNING)
        allocated = Counter(s for s in self.plan.values() if s is not None)
        return {
            "leader": self.writer,
            "tasks": {s.lower(): self.counts.get(s, 0) for s in TASK_STATES},
            "sessions": [
                {"name": name, "fixed_workers": s.get("fixed_workers", 0),
                 "share_ratio": s.get("share_ratio", 1.0), "allocated": allocated.get(name, 0),
                 "state": s.get("state", "open"),
                 "pending": len(self.pending.get(name, ())), "running": running.get(name, 0)}
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
        }

    # -------------------------------------------------------------- internals

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

    def _gpu_state(self, key: GpuKey) -> str:
        node = self.node_health.get(key[0])
        if node is not None and node.state != nh.UP:
            return node.state if node.state != nh.DRAINED else "draining"
        return self.gpu_health.get(key, gh.GpuHealth()).state

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
        self.fx.writes[self.keys.plan(key[0], key[1])] = info
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
            self.fx.publishes.append(Publish(
                gpu_queue(*key),
                {"session": session, "algorithms": list(algorithms), "node": key[0], "gpu": key[1],
                 "generation": self.plan_generation},
                URGENT, WARM_TASK, warm_id))

    def _warmed(self, event: dict[str, Any]) -> None:
        key = (str(event.get("node")), int(event.get("gpu", -1)))
        info = self.plan_info.get(key)
        if info is None or info.get("generation") != event.get("generation"):
            return  # the GPU has moved on since
        info = {**info, "warm": list(event.get("algorithms") or []), "warmed": event.get("time")}
        self.plan_info[key] = info
        self.fx.writes[self.keys.plan(key[0], key[1])] = info

    def _live_tasks(self) -> list[Task]:
        return [self.tasks[t] for g in self.gpus.values() for t in g.outstanding]

    def _batch_size(self, queue: deque[str]) -> int:
        """Tasks per message for a session's queue: enough of them to fill `batch_seconds`
        at their algorithm's measured run time (1 until a run time is known)."""
        ran = self.runtime.get(self.tasks[queue[0]].algorithm)
        if ran is None or self.policy.batch_max <= 1:
            return 1
        return max(1, min(self.policy.batch_max, int(self.policy.batch_seconds / max(ran, 1e-4))))

    def _dispatch_bundle(self, tasks: list[Task], gpu: Gpu, now: float) -> None:
        """Several tasks in one message (M11); each keeps its own attempt, fence and outcome."""
        first = tasks[0]
        bundle = f"{first.id}.a{len(first.attempts) + 1}+{len(tasks)}"
        messages = [self._dispatch(t, gpu, now, bundle=bundle) for t in tasks]
        self.bundle_left[bundle] = len(tasks)
        self._occupy(gpu)
        self.fx.publishes.append(Publish(
            gpu.queue, {"batch": messages, "node": gpu.node, "gpu": gpu.index}, NORMAL, RUN_TASK, bundle))

    def _occupy(self, gpu: Gpu) -> None:
        key = gpu.key
        self.busy[key] = self.busy.get(key, 0) + 1
        self._reindex(key)

    def _reindex(self, key: GpuKey) -> None:
        version, usable = self._usable_cache
        if version != self._topology:
            usable = self._usable_set()
        self.ready.put(key, self.plan.get(key), self.busy.get(key, 0), self.policy.depth,
                       key in usable and key in self.gpus)

    def _reindex_all(self) -> None:
        self._ready_topology = self._topology
        for key in sorted(set(self.gpus) | set(self.plan) | set(self.ready.where)):
            self._reindex(key)

    def _dispatch(self, task: Task, gpu: Gpu, now: float, priority: int | None = None,
                  bundle: str | None = None) -> dict[str, Any]:
        """A new attempt on `gpu`; published as its own message unless part of a bundle."""
        number = len(task.attempts) + 1
        urgent = task.id in self.urgent
        if priority is None:
            priority = NORMAL if bundle is not None or not urgent else URGENT
        attempt = Attempt(f"{task.id}.a{number}", gpu.node, gpu.index, DISPATCHED, now, bundle=bundle,
                          urgent=priority == URGENT)
        task.attempts.append(attempt)
        task.current_attempt = attempt.id
        key = gpu.key
        if not gpu.outstanding:
            _touch(self.gpu_seen, key, now)  # the silence clock starts with work
        gpu.outstanding.add(task.id)
        if bundle is None:
            self._occupy(gpu)
        else:
            self.bundle_of[task.id] = bundle
        self.live[task.session] += 1
        self._plan_dirty = True
        if urgent:
            self.urgent.discard(task.id)
            self.constraints.pop(task.id, None)
        elif self.constraints:
            self.constraints.pop(task.id, None)
        self._set_state(task, QUEUED)
        self._attempt_event(task, now, "dispatched", attempt)
        message = {"task_id": task.id, "attempt_id": attempt.id, "number": number,
                   "algorithm": task.algorithm, "args": task.args, "session": task.session,
                   "node": gpu.node, "gpu": gpu.index, "retry": task.retry,
                   "local_try": self._local_tries(task), "checkpoint": task.checkpoint_ref}
        if task.inputs:
            message["inputs"] = task.inputs
        if bundle is None:
            self.fx.publishes.append(Publish(gpu.queue, message, priority))
        return message

    @staticmethod
    def _local_tries(task: Task) -> int:
        if len(task.attempts) < 2:
            return 0
        runs = retry.stints(task.attempts)
        last = task.attempts[-1] if task.attempts else None
        if not runs or last is None or (runs[-1][-1].node, runs[-1][-1].gpu) != (last.node, last.gpu):
            return 0
        return len(runs[-1])

    def _failed(self, task: Task, attempt: Attempt, error: dict[str, Any], at: float, now: float,
                retry_as: Any = None, may_stay: bool = True) -> None:
        """`retry_as`: the worker's own local retry, already queued; `may_stay`: False when
        the GPU itself is in doubt (its worker went silent), so no retry there."""
        attempt.state, attempt.ended, attempt.error = FAILED, at, error
        attempt.started = attempt.started or at
        task.error = error
        self.seen.pop(task.id, None)
        self._event(task, at, "failed", attempt=attempt.id, node=attempt.node, gpu=attempt.gpu,
                    error=f"{error.get('type')}: {error.get('message')}")
        key = (attempt.node, attempt.gpu)
        self._gpu_failed(task, key, is_device_error(error), now)
        decision = retry.decide(task, attempt)
        local = isinstance(decision, retry.LocalRetry) and may_stay and self._usable(key)
        if retry_as and (not local or task.attempt(str(retry_as)) is not None):
            self._refuse_retry(task, attempt, str(retry_as), at)
            retry_as = None
        if local:
            if retry_as:
                # The worker has already re-queued it through Celery's retry: record, don't publish.
                follow = Attempt(id=retry_as, node=attempt.node, gpu=attempt.gpu, dispatched=at,
                                 bundle=attempt.bundle)
                task.attempts.append(follow)
                task.current_attempt = follow.id
                self._set_state(task, QUEUED)
                self._attempt_event(task, at, "retrying", follow)
                return
            self._release(task, attempt)
            self._dispatch(task, self.gpus[key], now, priority=URGENT)
            return
        self._release(task, attempt)
        if isinstance(decision, retry.GiveUp):
            self._fail(task, decision.reason, at)
            return
        avoid = (decision.avoid_gpus if isinstance(decision, retry.Reassign)
                 else frozenset({key}))
        if not any(k not in avoid and self.gpu_health.get(k, gh.GpuHealth()).usable for k in self.gpus):
            self._fail(task, f"no GPU left to try: it failed on {len(avoid)}, "
                             f"the other {len(self.gpus) - len(avoid)} are out of service", at)
            return
        task.current_attempt = None
        self._set_state(task, PENDING)
        self.urgent.add(task.id)
        self._constrain(task)
        self._event(task, at, "reassigning", avoid=sorted(f"{n}:{i}" for n, i in avoid))
        self._requeue_in_order(task)

    def _refuse_retry(self, task: Task, attempt: Attempt, retry_id: str, at: float) -> None:
        """A worker's own retry that must not run: fenced, and kept in the record (so that
        compaction clears its fence with the others)."""
        self.fx.fences.append(retry_id)
        if task.attempt(retry_id) is None:
            task.attempts.append(Attempt(id=retry_id, node=attempt.node, gpu=attempt.gpu,
                                         state=SUPERSEDED, dispatched=at, ended=at))
            self._event(task, at, "retry-refused", attempt=retry_id, node=attempt.node, gpu=attempt.gpu)

    def _link(self, task: Task, now: float, fresh: bool = False) -> bool:
        """Resolve a task's upstream tasks (M9). True when all have succeeded and it may be
        queued; otherwise it waits for the rest, or is cancelled when one cannot succeed."""
        assert task.after is not None
        inputs = task.inputs if task.inputs is not None else {}
        known = len(inputs)
        missing = []
        for name, up in task.after.items():
            if name in inputs:
                continue
            state, winner = self._outcome(up)
            if state == SUCCEEDED and winner is not None:
                inputs[name] = [up, winner]
            elif state is None or state in TERMINAL:
                task.inputs = inputs
                self._cancel(task, f"upstream task {up} ({name}) "
                                   f"{'is unknown (compacted?)' if state is None else 'ended ' + state}", now)
                return False
            else:
                missing.append(up)
        changed = len(inputs) != known
        task.inputs = inputs
        for up in missing:
            self.waiting.setdefault(up, set()).add(task.id)
        if not missing and changed and not fresh:
            self._event(task, now, "ready")  # was waiting: its record gains the inputs
        return not missing

    def _outcome(self, task_id: str) -> tuple[str | None, str | None]:
        """A task's state and succeeded attempt, whether it is whole or retired."""
        task = self.tasks.get(task_id)
        if task is not None:
            if task.state != SUCCEEDED:
                return task.state, None
            return SUCCEEDED, next(a.id for a in reversed(task.attempts) if a.state == SUCCEEDED)
        summary = self.retired.get(task_id)
        if summary is None:
            return None, None
        retired = read_retired(summary)
        return retired.state, retired.winner

    def _wake_dependents(self, now: float) -> None:
        """Tasks whose upstream ended: queued when all their inputs are in, else cancelled
        when one failed; a cancellation cascades down the DAG."""
        ended = self._ended_upstream
        while ended:
            # A dependent may be gone: cancelled through another upstream, then retired.
            waiting = [t for t in self.waiting.pop(ended.pop(), ()) if t in self.tasks]
            for task_id in sorted(waiting, key=lambda t: self.tasks[t].seq):
                task = self.tasks[task_id]
                if task.state != PENDING or not task.waiting:
                    continue
                if self._link(task, now):
                    self.pending.setdefault(task.session, deque()).append(task.id)
                    self._plan_dirty = True

    def _cancel(self, task: Task, reason: str, at: float) -> None:
        task.reason = reason
        self._set_state(task, CANCELLED)
        self._event(task, at, "cancelled", reason=reason)

    def _fail(self, task: Task, reason: str, at: float) -> None:
        task.reason = reason
        self._set_state(task, FAILED)
        self._event(task, at, "gave-up", reason=reason)

    def _constrain(self, task: Task) -> None:
        failed = [a for a in task.attempts if a.state == FAILED]
        if failed:
            self.constraints[task.id] = placement.Constraint(
                frozenset((a.node, a.gpu) for a in failed), frozenset(a.node for a in failed))

    def _check_liveness(self, now: float) -> None:
        """Silent attempts and silent GPUs; both clocks are kept oldest first (see _touch)."""
        limit = self.policy.heartbeat_timeout
        for task_id, last in _stale(self.seen, now - limit):
            task = self.tasks[task_id]
            attempt = task.live_attempt
            self.seen.pop(task_id, None)
            if attempt is None or attempt.state != RUNNING:
                continue
            log.warning("attempt %s on %s:%d silent for %.1f s: worker lost", attempt.id,
                        attempt.node, attempt.gpu, now - last)
            self._failed(task, attempt, {"type": "WorkerLost",
                                         "message": f"no heartbeat for {now - last:.1f} s"}, now, now,
                         may_stay=False)
        # A worker that died holding a message it had not started leaves that attempt
        # DISPATCHED forever (the broker returns it only after its visibility timeout):
        # a GPU with work and no word from its worker for as long gives that work back.
        for key, last in _stale(self.gpu_seen, now - limit):
            gpu = self.gpus.get(key)
            if gpu is None or not gpu.outstanding:
                del self.gpu_seen[key]  # idle: its clock restarts with its next work
                continue
            attempts = [self.tasks[t].live_attempt for t in gpu.outstanding]
            if any(a is not None and a.state == RUNNING for a in attempts):
                continue
            log.warning("no word from the worker of GPU %s:%d for %.1f s; moving its queued work",
                        key[0], key[1], now - last)
            _touch(self.gpu_seen, key, now)
            for task_id in sorted(gpu.outstanding, key=lambda t: self.tasks[t].seq):
                attempt = self.tasks[task_id].live_attempt
                if attempt is not None:
                    self._supersede(self.tasks[task_id], attempt, now,
                                    f"no word from the worker of GPU {key[0]}:{key[1]}")

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
                                                        self._verdicts(other)), now)

    def _gpu_failed(self, task: Task, key: GpuKey, device: bool, now: float) -> None:
        health = self.gpu_health.get(key, gh.GpuHealth(since=now))
        self._set_gpu_health(key, gh.on_failure(health, task.id, device, now,
                                                self.policy.quarantine_after, self._verdicts(key)), now)

    def _gpu_signal(self, key: GpuKey, reason: str, now: float) -> None:
        health = self.gpu_health.get(key, gh.GpuHealth(since=now))
        self._set_gpu_health(key, gh.on_signal(health, reason, now), now)

    def _verdicts(self, key: GpuKey) -> gh.Verdicts:
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
            self._plan_dirty = True
            self._topology += 1
        self.gpu_health[key] = after
        if after.streak:
            self.suspect.add(key)
        else:
            self.suspect.discard(key)
        self.fx.writes[self.keys.gpu_health(key[0], key[1])] = after.to_dict()
        if after.state == gh.QUARANTINED and (before is None or before.state != gh.QUARANTINED):
            log.warning("GPU %s:%d quarantined: %s", key[0], key[1], after.reason)
            gpu = self.gpus.get(key)
            for task_id in sorted(gpu.outstanding if gpu else (), key=lambda t: self.tasks[t].seq):
                attempt = self.tasks[task_id].live_attempt
                if attempt is not None:
                    self._supersede(self.tasks[task_id], attempt, now, f"GPU {key[0]}:{key[1]} quarantined")

    def _set_node(self, name: str, after: nh.NodeHealth) -> None:
        if self.node_health.get(name) != after:
            self._plan_dirty = True
            self._topology += 1
            self.node_health[name] = after
            self.fx.writes[self.keys.node_health(name)] = after.to_dict()

    def _drop_gpu(self, key: GpuKey, now: float, why: str) -> None:
        gpu = self.gpus.pop(key)
        self.busy.pop(key, None)
        self.ready.put(key, None, 0, self.policy.depth, False)
        self._plan_dirty = True
        self._topology += 1
        for task_id in sorted(gpu.outstanding, key=lambda t: self.tasks[t].seq):
            attempt = self.tasks[task_id].live_attempt
            if attempt is not None:
                self._supersede(self.tasks[task_id], attempt, now, why)

    def _supersede(self, task: Task, attempt: Attempt, now: float, why: str) -> None:
        self._release(task, attempt)
        self.fx.fences.append(attempt.id)
        attempt.state, attempt.ended = SUPERSEDED, now
        task.current_attempt = None
        self.seen.pop(task.id, None)
        self._set_state(task, PENDING)
        self.urgent.add(task.id)
        self._constrain(task)
        self._event(task, now, "superseded", attempt=attempt.id, reason=why)
        self._requeue_in_order(task)

    def _overtaken(self, attempt: Attempt, now: float) -> None:
        """A GPU queue is first in, first out within a priority, and a normal message comes
        after every other: once one starts, an attempt sent to that GPU clearly before it
        that has still not started never will (its message was lost: a leader that died
        between its commit and its publish, a Redis that lost its queues). Re-route it now;
        the GPU's silence check would never fire while its worker keeps running others."""
        gpu = self.gpus.get((attempt.node, attempt.gpu))
        if gpu is None or len(gpu.outstanding) < 2:
            return
        before = attempt.dispatched - OVERTAKEN_AFTER
        lost = [(task, other) for task_id in gpu.outstanding
                if (other := (task := self.tasks[task_id]).live_attempt) is not None
                and other.state == DISPATCHED and other.dispatched < before]
        for task, other in sorted(lost, key=lambda pair: pair[0].seq):
            log.warning("attempt %s on %s:%d never started while a later one did; re-routing",
                        other.id, other.node, other.gpu)
            self._supersede(task, other, now, "its message never reached the worker: "
                                              f"{attempt.id}, sent later, started first")

    def _ask_checkpoints(self, now: float) -> None:
        """Periodic checkpoint requests (M2) to tasks still running; kept oldest first."""
        for task_id, _ in _stale(self.checkpoint_due, now):
            task = self.tasks.get(task_id)
            if task is not None and task.state == RUNNING:
                self.fx.checkpoint_requests.append(task_id)
                self._checkpoint_later(task_id, now)
            else:
                del self.checkpoint_due[task_id]

    def _checkpoint_later(self, task_id: str, now: float) -> None:
        """The next periodic checkpoint request for a running task is one interval away."""
        if self.policy.checkpoint_every:
            _touch(self.checkpoint_due, task_id, now + self.policy.checkpoint_every)

    def _requeue_in_order(self, task: Task) -> None:
        queue = self.pending.setdefault(task.session, deque())
        index = next((i for i, t in enumerate(queue) if self.tasks[t].seq > task.seq), len(queue))
        queue.insert(index, task.id)

    def _release(self, task: Task, attempt: Attempt) -> None:
        """The attempt no longer occupies its GPU (called once per attempt that ends)."""
        self.live[task.session] -= 1
        self._plan_dirty = True
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
            key = gpu.key
            n = self.busy.get(key, 1) - 1
            if n > 0:
                self.busy[key] = n
            else:
                self.busy.pop(key, None)
            self._reindex(key)

    def _reject(self, rejection: Rejection, now: float) -> None:
        log.warning("rejected ingress message %s: %s", rejection.task_id or "(no id)", rejection.reason)
        if rejection.task_id is None or self._known(rejection.task_id):
            return
        task = Task(id=rejection.task_id, session=rejection.session or "",
                    algorithm=rejection.algorithm or "", state=REJECTED, submitted=now,
                    reason=rejection.reason)
        self.tasks[task.id] = task
        self.counts[REJECTED] += 1
        self._ending.append(task.id)
        self._event(task, now, "rejected", reason=rejection.reason)

    def _session(self, req: SessionRequest, now: float) -> None:
        record = {
            "name": req.name, "fixed_workers": req.fixed_workers, "share_ratio": req.share_ratio,
            "max_workers": req.max_workers, "priority": req.priority,
            "algorithms": list(req.algorithms), "state": "open" if req.action == "open" else "closed",
            "opened": self.sessions.get(req.name, {}).get("opened", now),
        }
        self.sessions[req.name] = record
        self._specs = None
        self.fx.writes[self.keys.session(req.name)] = record
        self._plan_dirty = True

    def _set_state(self, task: Task, state: str) -> None:
        if task.state != state:
            self.counts[task.state] -= 1
            self.counts[state] += 1
            task.state = state
            if state in TERMINAL:
                self._ending.append(task.id)
                if task.id in self.waiting:
                    self._ended_upstream.append(task.id)

    def _event(self, task: Task, at: float, kind: str, lazy_until: float | None = None,
               **detail: Any) -> None:
        event = {"time": at, "event": kind}
        if detail:
            event.update(detail)
        event["by"] = self.writer
        self._append(task, event, lazy_until)

    def _attempt_event(self, task: Task, at: float, kind: str, attempt: Attempt,
                       lazy_until: float | None = None) -> None:
        """_event for the hot path: every task has several of these."""
        event = {"time": at, "event": kind, "attempt": attempt.id, "node": attempt.node,
                 "gpu": attempt.gpu, "by": self.writer}
        if attempt.bundle is not None:
            event["bundle"] = attempt.bundle
        self._append(task, event, lazy_until)

    def _append(self, task: Task, event: dict[str, Any], lazy_until: float | None) -> None:
        events = task.events
        events.append(event)
        if len(events) > MAX_EVENTS:
            del events[1 : len(events) - MAX_EVENTS + 1]
        if lazy_until is not None and task.id not in self.fx.tasks:
            self.lazy.setdefault(task.id, lazy_until)
            return
        if self.lazy:
            self.lazy.pop(task.id, None)
        self.fx.tasks[task.id] = task

    def _flush_lazy(self, now: float) -> None:
        for task_id, _ in _stale(self.lazy, now):  # inserted in order of their due times
            del self.lazy[task_id]
            self.fx.tasks[task_id] = self.tasks[task_id]


class _Ready:
    """GPUs that can take another message, by the session they serve, in the order they
    became so. Routing takes the first few a queue could fill instead of scanning every GPU
    with room: at thousands of GPUs that scan was most of a tick. Idle GPUs come first.
    Unplanned GPUs are kept under None: `where` holds every usable GPU with room."""

    def __init__(self) -> None:
        self.idle: dict[str | None, dict[GpuKey, None]] = {}
        self.part: dict[str | None, dict[GpuKey, None]] = {}
        self.where: dict[GpuKey, tuple[str | None, bool]] = {}

    def put(self, key: GpuKey, session: str | None, load: int, depth: int, usable: bool) -> None:
        old = self.where.pop(key, None)
        if old is not None:
            (self.idle if old[1] else self.part)[old[0]].pop(key, None)
        if usable and load < depth:
            (self.idle if load == 0 else self.part).setdefault(session, {})[key] = None
            self.where[key] = (session, load == 0)

    def take(self, session: str | None, need: int) -> list[GpuKey]:
        out = list(itertools.islice(self.idle.get(session, ()), need))
        if len(out) < need:
            out.extend(itertools.islice(self.part.get(session, ()), need - len(out)))
        return out


def _touch(clock: dict[Any, float], key: Any, now: float) -> None:
    """Set a last-seen time, moving the key to the end: the dict stays oldest first."""
    clock.pop(key, None)
    clock[key] = now


def _stale(clock: dict[Any, float], cutoff: float) -> list[tuple[Any, float]]:
    """The entries at or before `cutoff`, from the front of an oldest-first dict."""
    out = []
    for key, when in clock.items():
        if when > cutoff:
            break
        out.append((key, when))
    return out


def _brief(event: dict[str, Any]) -> str:
    return ", ".join(f"{k}={event.get(k)}" for k in ("kind", "task_id", "attempt_id"))
