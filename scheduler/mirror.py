"""A follower's warm copy of the cluster's keyspace, kept current by an etcd watch.

A takeover then starts from memory instead of reading every record: the new leader waits
until the mirror has seen the current revision (or reads etcd when it cannot), and builds
its state from the mirror. While leading, a replica stops its mirror: it is the writer.
No etcd client resumes a watch by itself after its member dies, so on any watch error
the mirror takes a fresh snapshot and watches again from its revision.

The same watch tells a follower at once when the leader key goes (its lease expired, or
the leader resigned): the follower campaigns then, and otherwise only every half second.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

from etcd3.client import MultiEndpointEtcd3Client
from etcd3.events import DeleteEvent

from corral.base.etcd import snapshot

log = logging.getLogger("corral.mirror")


class Mirror:
    def __init__(self, client: MultiEndpointEtcd3Client, root: str, leader: str = "leader",
                 vacant: threading.Event | None = None) -> None:
        self.client = client
        self.root = root
        self.leader = leader  # the leader key, relative to the root
        self.vacant = vacant or threading.Event()  # set when the watch sees the leader key go
        self.values: dict[str, Any] = {}
        self.revision = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._updates: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="corral-mirror")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._updates.put(None)  # wakes the thread now: a takeover waits for this stop
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def view(self, prefix: str) -> dict[str, Any]:
        """Parsed values under `prefix` (relative to the root), keyed by the rest of the key."""
        with self._lock:
            return {k[len(prefix):]: v for k, v in self.values.items() if k.startswith(prefix)}

    def wait_for(self, revision: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.revision >= revision:
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            updates = self._updates = queue.SimpleQueue()
            watch = None
            try:
                raw, revision = snapshot(self.client, self.root)
                with self._lock:
                    self.values = {k: v for k, v in ((k, _parse(b)) for k, b in raw.items())
                                   if v is not None}
                    self.revision = revision
                watch = self.client.add_watch_prefix_callback(self.root, updates.put,
                                                              start_revision=revision + 1)
                while not self._stop.is_set():
                    try:  # stop() wakes it with None; the timeout is only a safety net
                        response = updates.get(timeout=1.0)
                    except queue.Empty:
                        continue
                    if response is None:
                        continue
                    if isinstance(response, Exception):
                        raise response
                    self._apply(response)
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("mirror watch lost (%s); taking a new snapshot", exc)
                    self._stop.wait(0.5)
            finally:
                if watch is not None:
                    try:
                        self.client.cancel_watch(watch)
                    except Exception:
                        log.debug("cancel_watch failed", exc_info=True)

    def _apply(self, response: Any) -> None:
        with self._lock:
            for event in response.events:
                key = event.key.decode()[len(self.root):]
                if isinstance(event, DeleteEvent):
                    self.values.pop(key, None)
                    if key == self.leader:
                        log.info("the leader key is gone (revision %d)", response.header.revision)
                        self.vacant.set()
                else:
                    value = _parse(event.value)
                    if value is not None:
                        self.values[key] = value
            self.revision = max(self.revision, response.header.revision)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
