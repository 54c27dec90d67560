"""The scheduler process: the imperative shell around the Core state machine.

Threads only produce events onto one inbox (election, node snapshots, broker
consumer); a single loop applies them in order, then flushes the core's effects:
one fenced etcd transaction, then GPU-queue publishes, then acks (a burst too big for one
transaction is written after the dispatches it does not hold). Nothing is published or
acknowledged before it is durable in etcd.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from typing import Any

import redis

from corral.base import broker
from corral.base.blobs import BlobStore
from corral.base.config import Settings
from corral.base.etcd import connect, get_json, prefix_json
from corral.base.history import HistoryError, open_history
from corral.base.keys import BUILTIN_ALGORITHMS, Keys
from corral.scheduler import heap, intake, upkeep
from corral.scheduler.archive import archive
from corral.scheduler.core import Core, Effects, Policy
from corral.scheduler.election import FOLLOWER_REFRESH, Election
from corral.scheduler.http import StatusServer
from corral.scheduler.inbound import Inbound
from corral.scheduler.ingress import Rejection, read, readable, unidentified
from corral.scheduler.metrics import Metrics
from corral.scheduler.mirror import Mirror
from corral.scheduler.publish import queue_effects
from corral.scheduler.store import Fenced, Store, dispatch_first, etcd_writes

log = logging.getLogger("corral.scheduler")

SUMMARY_EVERY = 0.5
NODE_POLL = 0.25
STORAGE_POLL = 2.0  # seconds between readings of etcd's database size


class Scheduler:
    def __init__(self, settings: Settings, sid: str, http_port: int = 0,
                 http_host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.sid = sid
        self.keys = Keys(settings.cluster)
        self.etcd = connect(settings)
        self.store = Store(self.etcd, self.keys)
        self.election = Election(self.etcd, self.keys, sid, settings.leader_ttl)
        self.policy = Policy.from_settings(settings)
        self.core = Core(self.policy, sid)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()  # C-level: the cheapest hand-off
        self._turn = threading.Lock()  # held by whichever thread runs the loop's round (take_now)
        # Timeouts: a leader cut off from Redis must fail fast and step down, not hang.
        self.redis = broker.client(settings.broker, settings.redis_master,
                                   client_name=f"corral-scheduler-{sid}", socket_timeout=5,
                                   socket_connect_timeout=2, health_check_interval=10)
        self.origin = f"corral-scheduler/{sid}@{socket.gethostname()}"
        self.inbound: Inbound | None = None
        self.token: int | None = None
        self.stopping = threading.Event()
        self.http = StatusServer(self, http_port, http_host)
        self.metrics = Metrics(sid)
        self._last_summary = 0.0
        self._owed: Effects | None = None  # Redis work of committed ticks, while Redis is away
        self._summary_last: dict[str, Any] = {}
        self._wake_election = threading.Event()  # the leader key went, or this replica stops
        self._lease: Any = None  # this replica's registration lease, granted by the election thread
        self._record = json.dumps({"id": sid, "address": self.http.address, "since": time.time()})
        self.mirror = Mirror(self.etcd, self.keys.root, self._mark, self.keys.leader[len(self.keys.root):],
                             self._wake_election)
        self.blobs = BlobStore(settings, self.redis)
        self.history = open_history(settings, self.redis)
        self._history_down: str | None = None  # why the last move to history failed

    @property
    def role(self) -> str:
        return "leader" if self.token is not None else "follower"

    # --------------------------------------------------------------- threads

    def serve(self) -> None:
        heap.tune()
        self.http.start()
        self.mirror.start()
        threading.Thread(target=self._elect, daemon=True, name="corral-election").start()
        threading.Thread(target=self._poll_nodes, daemon=True, name="corral-nodes").start()
        threading.Thread(target=upkeep.keep_etcd_small, args=(self,), daemon=True,
                         name="corral-revisions").start()
        log.info("scheduler %s up (http %s)", self.sid, self.http.address)
        try:
            self._loop()
        finally:
            with self._turn:
                self._step_down("shutting down")
            self.election.resign()
            self.http.stop()

    def stop(self) -> None:
        self.stopping.set()
        self._wake_election.set()

    def _elect(self) -> None:
        key = self.keys.scheduler(self.sid)
        last_reg, registered = 0.0, False
        while not self.stopping.is_set():
            self._wake_election.clear()  # before the round: a vacancy seen during it wakes the next
            try:
                now = time.monotonic()
                if now - last_reg > 0.5:  # the record is written again only with a new lease
                    # (granted here: etcd may be slow or away when this replica starts)
                    lease = self._lease
                    if lease is None or not any(r.TTL > 0 for r in self.etcd.refresh_lease(lease.id)):
                        self._lease = self.etcd.lease(max(2, int(self.settings.leader_ttl * 2)))
                        registered = False
                    if not registered:
                        self.etcd.put(key, self._record, lease=self._lease)
                        registered = True
                    last_reg = now
                if self.token is None:
                    token = self.election.campaign()
                    if token is not None:
                        self.inbox.put(("leader", token))
                else:
                    with self.metrics.timed("lease"):
                        held = self.election.still_leader()
                    if not held:
                        self.inbox.put(("deposed", self.token))
            except Exception as exc:
                log.warning("election round failed: %s", exc)
                if self.token is not None and not self.election.holds():
                    self.inbox.put(("deposed", self.token))
            # (a follower's mirror wakes it when the leader key goes)
            self._wake_election.wait(FOLLOWER_REFRESH if self.token is None else 0.25)

    def _mark(self) -> int | None:
        """The mirror's mark: this replica's registration put again; its revision."""
        lease = self._lease
        if lease is None:
            return None
        return int(self.etcd.put(self.keys.scheduler(self.sid), self._record, lease=lease).header.revision)

    def _poll_nodes(self) -> None:
        """While leading: level-triggered node snapshots, and etcd's database size, for
        admission (backpressure before the quota). A follower reads neither: a takeover
        builds a new core and reads the nodes itself."""
        last = None
        next_size = 0.0
        while not self.stopping.is_set():
            if self.token is None:
                last = None  # the next term starts from its own read
                self.stopping.wait(NODE_POLL)
                continue
            try:
                nodes = prefix_json(self.etcd, self.keys.node())
                if nodes != last:
                    self.inbox.put(("nodes", nodes))
                    last = nodes
                if time.monotonic() >= next_size:
                    next_size = time.monotonic() + STORAGE_POLL
                    self.inbox.put(("storage", int(self.etcd.status().db_size)))
            except Exception as exc:
                log.warning("reading nodes failed: %s", exc)
            self.stopping.wait(NODE_POLL)

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                events = [self.inbox.get(timeout=0.05)]
            except queue.Empty:
                events = []
            with self._turn:
                self._round(events)

    def take_now(self, events: list[tuple[Any, ...]]) -> bool:
        """What a reader read while the loop was idle, applied on that reader's thread: waking
        the loop's thread for it cost a lone task 0.2 to 0.3 ms on its way in and again on
        its way out (docs/benchmarks.md). Still one state machine that takes one turn at a
        time, in order: refused while the loop has its turn or the inbox holds anything (the
        reader offers only what follows all it handed on before). Refused too while group
        commit would hold the round for more events (core/pacing.py): the reader would wait
        for its own input; the loop's thread gathers them, as before."""
        if not self._turn.acquire(blocking=False):
            return False
        try:
            if self.token is None or not self.inbox.empty() or self.core.hold() > 0:
                return False
            self._round(events, gather=False)
            return True
        finally:
            self._turn.release()

    def _round(self, events: list[tuple[Any, ...]], gather: bool = True) -> None:
        for event in events:
            self._apply(event)
        budget = 4096
        while budget:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._apply(event)
            budget -= 1
        if self.token is not None:
            if gather:
                self._gather()
            try:
                self._tick()
            except Fenced as exc:
                self._step_down(str(exc))
            except Exception:
                log.exception("tick failed; stepping down to rebuild from etcd")
                self._step_down("tick failed")

    def _gather(self) -> None:
        """Group commit: while the core says the next tick may wait (core/pacing.py), take
        the events that come meanwhile into it, until that is no longer so."""
        hold = self.core.hold()
        if hold <= 0:
            return
        deadline = time.monotonic() + hold
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.inbox.get(timeout=left)
            except queue.Empty:
                return
            self._apply(event)
            if self.token is None or self.core.hold() <= 0:
                return

    def _apply(self, event: tuple[Any, ...]) -> None:
        """One input, contained: whatever it raises is logged (and, for a message, recorded
        as its rejection) and the message acknowledged; nothing one message holds can stop
        this process or make the next leader stop on it."""
        kind = event[0]
        now = time.time()
        try:
            if kind == "nodes":
                self.core.nodes_changed(event[1], now)
            elif kind == "leader":
                if event[1] != self.token:  # a term is taken over once
                    self._take_over(event[1])
            elif kind == "storage":
                self.core.storage(event[1])
            elif kind == "deposed":
                if event[1] == self.token:
                    self._step_down("lease lost")
            elif self.inbound is None or not self.inbound.owns(event[4]):
                return  # read in an earlier term: it was handed back and will come again
            elif kind == "ingress":
                self.inbound.applied(kind)
                self._ingress(event, now)
            elif kind == "status":
                self.inbound.applied(kind)
                self._status(event, now)
        except Fenced as exc:
            self._step_down(str(exc))
        except Exception:
            log.exception("handling a %s input failed; it is dropped", kind)
            if kind == "leader":
                self._step_down("takeover failed")

    def _ingress(self, event: tuple[Any, ...], now: float) -> None:
        _, headers, body, error, token, raw = event
        try:
            requests = read(headers, body, error, raw,
                            known_algorithms=BUILTIN_ALGORITHMS | self.core.algorithms,
                            inline_limit=self.settings.inline_limit)
            if self.core.admitting:  # else refused anyway: nothing to keep for them
                requests = intake.offload(requests, self.settings, self.redis, self.blobs)
            intake.recall(requests, self.core, self.history)
            for parsed in requests:
                try:
                    self.core.submit(parsed, now, None)
                except Exception as exc:
                    log.exception("ingress request %s could not be applied", getattr(parsed, "task_id", None))
                    self.core.submit(Rejection(unidentified(raw), readable(
                        f"internal error while handling it: {type(exc).__name__}: {exc}")), now, None)
        finally:
            self.core.fx.acks.append(token)  # one message, acknowledged once all it holds is durable

    def _status(self, event: tuple[Any, ...], now: float) -> None:
        _, _headers, body, error, token, _raw = event
        try:
            if error or not isinstance(body, dict):
                log.warning("undecodable status event dropped: %s", error)
            else:
                self.core.status(body, now, None)
        finally:
            self.core.fx.acks.append(token)

    def _tick(self) -> None:
        now = time.time()
        self.core.tick(now)
        fx = self.core.take_effects()
        stats, latencies = self.core.take_stats()
        if stats or latencies:
            self.metrics.count(stats, latencies)
        extra: dict[str, Any] = {}
        if now - self._last_summary >= SUMMARY_EVERY:
            self._last_summary = now
            summary = self.core.summary()
            if summary != self._summary_last:
                self._summary_last = summary
                extra[self.keys.summary] = summary
        if fx or extra or self._owed is not None:
            self._flush(fx, extra)
        if self.core.archiving and self._owed is None:
            self._archive(now)

    def _write(self, writes: dict[str, Any]) -> None:
        """Fenced etcd writes (store.py), timed for `corral_etcd_commit_seconds`."""
        assert self.token is not None
        if writes:
            with self.metrics.timed("commit"):
                self.store.write(self.token, writes)

    def _flush(self, fx: Effects, extra: dict[str, Any]) -> None:
        assert self.token is not None
        head, rest = dispatch_first(fx, self.keys, etcd_writes(fx, self.keys, extra)) \
            if fx.writes or extra else ({}, {})
        if head:  # dispatches go out once what they carry is durable; acks wait for the rest
            self._write(head)
            acks, fx.acks = fx.acks, []
            self._publish(fx)
            self._write(rest)
            self._publish(Effects(acks=acks))
            return
        if rest:
            self._write(rest)
        self._publish(fx)

    def _publish(self, fx: Effects) -> None:
        """The Redis side of what etcd now holds, after what an earlier tick still owes it."""
        owed, self._owed = self._owed, None
        fx = fx.after(owed)
        try:
            self._send(fx)
        except redis.RedisError as exc:
            # What etcd holds stays; Redis gets it once it is back, in order, without a
            # change of leader (a restarted Redis loses nothing it has not yet been sent).
            self._owed = fx.unsent()
            if owed is None:
                log.warning("Redis unreachable (%s): dispatches and acknowledgements wait for it", exc)
            return
        if owed is not None:
            log.warning("Redis is back: what waited for it was sent")

    def _archive(self, now: float) -> None:
        assert self.token is not None
        try:
            archive(self.core, self.history, self.keys, self._write, now)
        except HistoryError as exc:
            if self._history_down is None:
                log.warning("%s; finished tasks stay in etcd until it answers", exc)
            self._history_down = str(exc)
            return
        if self._history_down is not None:
            log.warning("the history store answers again: finished tasks move there")
            self._history_down = None

    def _send(self, fx: Effects) -> None:
        """The Redis side of a tick, then its acks, in one round trip; emptied once sent, so
        that what an error leaves is exactly what is still owed. The lease is checked once
        it is all built, just before anything goes out: building a big tick takes a while,
        and a leader deposed meanwhile sends nothing."""
        assert self.inbound is not None
        with self.redis.pipeline(transaction=False) as pipe:
            if fx.redis:
                queue_effects(pipe, self.settings.cluster, self.origin, fx)
            self.inbound.queue_acks(pipe, fx.acks)
            if not self.election.holds():
                raise Fenced("lease could not be confirmed before publishing")
            if len(pipe):
                pipe.execute()
            fx.fences, fx.checkpoint_requests, fx.stale_checkpoints, fx.stops = [], [], [], []
            fx.unfences, fx.dispatches, fx.acks = [], [], []

    # ------------------------------------------------------- leadership

    def _take_over(self, token: int) -> None:
        """A takeover is a reconcile: state from the warm mirror (or etcd), then the world."""
        started = time.monotonic()
        if self.inbound is not None:  # won again while leading (the key went meanwhile): the
            self.inbound.stop()  # old term's readers hand back what they took, then stop
            self.inbound = None
        self.token = token
        now = time.time()
        current = self.etcd.get_response(self.keys.leader).header.revision
        warm = self.mirror.wait_for(current, timeout=2.0)
        self.mirror.stop()
        if warm:
            def read(prefix: str) -> dict[str, Any]:
                return self.mirror.view(prefix[len(self.keys.root):])
        else:
            log.warning("mirror behind etcd; reading the whole keyspace")

            def read(prefix: str) -> dict[str, Any]:
                return prefix_json(self.etcd, prefix)
        self.core = Core(self.policy, self.sid)
        self.core.load(
            list(read(self.keys.task()).values()),
            read(self.keys.session()),
            read(self.keys.gpu_health()),
            read(self.keys.node_health()),
            now,
            read(self.keys.plan()),
            read(self.keys.done()),
        )
        self.core.nodes_changed(prefix_json(self.etcd, self.keys.node()), now)
        last = get_json(self.etcd, self.keys.summary) or {}
        self.core.recent.extend(e for e in last.get("recent", []) if isinstance(e, dict))
        self.core._note(now, "takeover", f"{self.sid} leads (term {token})")
        self.metrics.takeovers.inc()
        heap.settle()
        self._summary_last = {}
        self.inbound = Inbound(self.redis, self.sid, self.inbox, self.take_now)
        self.inbound.start()
        log.info(
            "%s leading (token %s): %d tasks, %d finished, %d pending, rebuilt from %s in %.0f ms",
            self.sid, token, len(self.core.tasks), len(self.core.retired),
            sum(len(q) for q in self.core.pending.values()),
            "the warm mirror" if warm else "etcd", (time.monotonic() - started) * 1000,
        )

    def _step_down(self, why: str) -> None:
        if self.token is None:
            return
        log.warning("%s stops leading: %s", self.sid, why)
        ended, self.token = self.token, None
        self.core.take_effects()  # never publish or ack what was not made durable
        self._owed = None
        if self.inbound is not None:
            self.inbound.stop()  # what was read and not acknowledged goes back to the queue
            self.inbound = None
        if not self.stopping.is_set():
            self.mirror.start()
        self.election.resign(ended)
