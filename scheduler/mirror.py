"""A follower's warm copy of the cluster's keyspace, read in bulk twice a second.

A takeover then starts from memory instead of reading every record: the new leader has
the mirror catch up once more (or reads etcd when it cannot), and builds its state from
it. While leading, a replica stops its mirror: it is the writer.

A live watch on the keyspace cost each follower as much CPU per task as a quarter of the
leader's: etcd sends a synced watcher one response per revision, and each one crosses
gRPC's and the etcd client's threads. So the mirror reads in rounds instead: every
`CATCH_UP` seconds it opens a watch from the revision after the last one it holds and
reads until it has seen etcd's current revision, then cancels it; etcd sends such a
catching-up watcher its history in batches of up to a thousand revisions per response.
That revision is nearly always a write under the root; when it is not (the last writes
were another cluster's) the watch falls quiet short of it, and the round then reads up
to a write of the replica's own (`mark`: its registration, put again), which is under the
root. Only then: a mark made every round would itself move etcd, and every follower would
mark in turn, for ever. Any error or stall takes a fresh snapshot instead; the leader
keeps `CORRAL_ETCD_HISTORY` (60 s) of history, far more than a round needs.

A live watch on the `leader` key alone tells a follower at once when it goes (its lease
expired, or the leader resigned): the follower campaigns then, and otherwise only every
half second.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from etcd3.client import MultiEndpointEtcd3Client
from etcd3.events import DeleteEvent

from corral.base.etcd import snapshot

log = logging.getLogger("corral.mirror")

CATCH_UP = 0.5  # seconds between a follower's rounds
QUIET = 0.25  # seconds without an event, short of the current revision, before a round marks
STALL = 2.0  # seconds a round waits for etcd's next batch before it reads a snapshot instead

Mark = Callable[[], "int | None"]  # a write of the replica's own; its revision (None: not now)


class Mirror:
    def __init__(self, client: MultiEndpointEtcd3Client, root: str, mark: Mark, leader: str = "leader",
                 vacant: threading.Event | None = None) -> None:
        self.client = client
        self.root = root
        self.mark = mark
        self.leader = leader  # the leader key, relative to the root
        self.vacant = vacant or threading.Event()  # set when the watch sees the leader key go
        self.values: dict[str, Any] = {}
        self.revision = 0  # every event under the root up to this one is in `values`
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._vacancy: int | None = None  # the leader key's watch
        self._vacancy_lost = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="corral-mirror")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()  # wakes the thread now: a takeover waits for this stop
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._unwatch_leader()

    def view(self, prefix: str) -> dict[str, Any]:
        """Parsed values under `prefix` (relative to the root), keyed by the rest of the key."""
        with self._lock:
            return {k[len(prefix):]: v for k, v in self.values.items() if k.startswith(prefix)}

    def wait_for(self, revision: int, timeout: float) -> bool:
        """Whether the mirror holds every event up to `revision`; asks for a round now."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if self.revision >= revision:
                return True
            time.sleep(0.005)
        return self.revision >= revision

    def _run(self) -> None:
        synced = False
        while not self._stop.is_set():
            self._wake.clear()  # before the round: a wait_for during it asks for the next
            try:
                if self._vacancy is None or self._vacancy_lost.is_set():
                    self._watch_leader()
                if not synced:
                    self._snapshot()
                    synced = True
                else:
                    self._catch_up()
            except Exception as exc:
                synced = False
                if not self._stop.is_set():
                    log.warning("mirror round failed (%s); taking a new snapshot", exc)
                    self._stop.wait(0.5)
                continue
            self._wake.wait(CATCH_UP)

    def _snapshot(self) -> None:
        raw, revision = snapshot(self.client, self.root)
        with self._lock:
            self.values = {k: v for k, v in ((k, _parse(b)) for k, b in raw.items()) if v is not None}
            self.revision = revision

    def _catch_up(self) -> None:
        """Read what changed since the last round, up to etcd's current revision: it is
        nearly always a write under the root, whose event ends the round; when the watch
        falls quiet short of it (the last writes were outside the root), up to a mark."""
        target = self.client.get_response(self.root + self.leader).header.revision
        if target <= self.revision:
            return  # etcd has not moved
        updates: queue.SimpleQueue[Any] = queue.SimpleQueue()
        watch = self.client.add_watch_prefix_callback(self.root, updates.put,
                                                      start_revision=self.revision + 1)
        try:
            marked = False
            while self.revision < target and not self._stop.is_set():
                try:
                    response = updates.get(timeout=STALL if marked else QUIET)
                except queue.Empty:
                    if marked:
                        raise TimeoutError(f"no events from etcd for {STALL:.0f} s") from None
                    mark = self.mark()  # only now: marks would otherwise wake every follower
                    if mark is None:
                        return
                    target, marked = mark, True
                    continue
                if isinstance(response, Exception):
                    raise response
                self._apply(response)
        finally:
            self.client.cancel_watch(watch)

    def _apply(self, response: Any) -> None:
        with self._lock:
            for event in response.events:
                key = event.key.decode()[len(self.root):]
                if isinstance(event, DeleteEvent):
                    self.values.pop(key, None)
                else:
                    value = _parse(event.value)
                    if value is not None:
                        self.values[key] = value
                # Batches hold whole revisions, in order: the header's revision is etcd's
                # current one, which a catching-up watch may not have been sent yet.
                self.revision = max(self.revision, event.mod_revision)

    def _watch_leader(self) -> None:
        self._unwatch_leader()
        self._vacancy_lost.clear()
        self._vacancy = self.client.add_watch_callback(self.root + self.leader, self._on_leader)

    def _unwatch_leader(self) -> None:
        if self._vacancy is not None:
            try:
                self.client.cancel_watch(self._vacancy)
            except Exception:
                log.debug("cancel_watch failed", exc_info=True)
            self._vacancy = None

    def _on_leader(self, response: Any) -> None:
        if isinstance(response, Exception):  # no etcd client resumes a watch by itself
            self._vacancy_lost.set()
            self._wake.set()
            return
        if any(isinstance(e, DeleteEvent) for e in response.events):
            log.info("the leader key is gone (revision %d)", response.header.revision)
            self.vacant.set()


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
