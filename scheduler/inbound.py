"""Reading the leader's two inputs from Redis in batches, reliably.

Ingress (`corral.ingress`, a Celery queue any producer can use): messages are moved
atomically from the queue's lists into this replica's processing list, up to a batch at
a time, and removed from it, each by its bytes, once their records are durable in etcd.
A new leader first moves every replica's processing list back to the front of the queue,
so messages that a dead or deposed leader had taken are handled at once, not after a
visibility timeout.

Status (`corral.status`, a Redis stream the workers append to): read through a consumer
group and acknowledged in batches; a new leader claims every pending entry at takeover.
Every 5 s the reader trims the stream below the oldest entry still pending or unread.

What a reader reads while the leader's loop may be idle (a message that ends the ingress
reader's idle wait, new status entries) is offered to the loop's state machine first, to
be applied on the reader's thread (Scheduler.take_now); anything refused goes to the inbox.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from corral.base.keys import INGRESS_QUEUE, PRIORITY_STEPS, STATUS_QUEUE
from corral.base.wire import decode, queue_key

log = logging.getLogger("corral.inbound")

GROUP = "corral-leader"
BATCH = 512
TRIM_EVERY = 5.0  # seconds between trims of the status stream to what is not yet acknowledged
PROCESSING = INGRESS_QUEUE + ".processing."

# KEYS: the ingress lists in priority order, then the processing list. ARGV[1]: batch size.
_TAKE = """
local out = {}
local max = tonumber(ARGV[1])
local proc = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  while #out < max do
    local item = redis.call('RPOPLPUSH', KEYS[i], proc)
    if not item then break end
    out[#out + 1] = item
  end
end
return out
"""

# KEYS[1]: a processing list, KEYS[2]: the ingress list. Oldest ends up next in line.
_RESTORE = """
local n = 0
while true do
  local item = redis.call('LPOP', KEYS[1])
  if not item then return n end
  redis.call('RPUSH', KEYS[2], item)
  n = n + 1
end
"""


def ingress_lists() -> list[str]:
    return [queue_key(INGRESS_QUEUE, p) for p in PRIORITY_STEPS]


class Inbound:
    """Both readers of one leadership term, and the acks they need."""

    def __init__(self, client: redis.Redis, sid: str, inbox: queue.SimpleQueue[Any],
                 take_now: Callable[[list[tuple[Any, ...]]], bool] | None = None) -> None:
        self.r = client
        # What a reader reads while the loop may be idle is offered here first
        # (Scheduler.take_now); what it refuses goes to the inbox (hand_on).
        self.take_now = take_now
        self._handed = {"ingress": 0, "status": 0}  # events handed on, by reader
        self._applied = {"ingress": 0, "status": 0}  # of those, how many have been applied
        self.sid = sid
        self.inbox = inbox
        self.processing = PROCESSING + sid
        self._take = client.register_script(_TAKE)
        self._restore = client.register_script(_RESTORE)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_trim = 0.0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.reclaim()
        self._threads = [
            threading.Thread(target=self._read_ingress, daemon=True, name="corral-ingress"),
            threading.Thread(target=self._read_status, daemon=True, name="corral-status"),
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():  # a reader whose message stepped down
                t.join(timeout=5)
        try:
            self._restore(keys=[self.processing, INGRESS_QUEUE])
        except redis.RedisError as exc:
            log.warning("could not hand back in-flight ingress messages: %s", exc)

    def reclaim(self) -> None:
        """Take over what earlier leaders had read but not acknowledged."""
        moved = 0
        for key in self.r.scan_iter(match=PROCESSING + "*", count=100):
            moved += int(self._restore(keys=[key, INGRESS_QUEUE]))
        self._ensure_group()
        claimed = 0
        start = "0-0"
        while True:
            start, entries, _ = self.r.xautoclaim(STATUS_QUEUE, GROUP, self.sid, 0, start, count=BATCH)
            claimed += len(entries)
            if start in (b"0-0", "0-0") or not entries:
                break
        if moved or claimed:
            log.info("reclaimed %d ingress message(s) and %d status event(s)", moved, claimed)

    def _ensure_group(self) -> None:
        """The status stream and the leader's consumer group: made at takeover, and again
        whenever Redis comes back without them (a restart without persistence)."""
        try:
            self.r.xgroup_create(STATUS_QUEUE, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -------------------------------------------------------------- readers

    def _read_ingress(self) -> None:
        keys = [*ingress_lists(), self.processing]
        while not self._stop.is_set():
            try:
                items = self._take(keys=keys, args=[BATCH])
                idle = not items
                if idle:
                    item = self.r.blmove(INGRESS_QUEUE, self.processing, 0.05, "RIGHT", "LEFT")
                    items = [item] if item is not None else []
                if self._stop.is_set():  # the term ended while we read: hand it all back
                    self._restore(keys=[self.processing, INGRESS_QUEUE])
                    return
                events = []
                for raw in items:
                    headers, body, error = decode(raw)
                    events.append(("ingress", headers, body, error, ("ingress", self, raw), raw))
                self._hand_on(events, offer=idle)  # a batch waits for the loop's group commit
            except redis.RedisError as exc:
                log.warning("reading ingress failed: %s", exc)
                self._stop.wait(0.2)
            except Exception:  # never let the reader die: the leader would stop taking work
                log.exception("reading ingress failed")
                self._stop.wait(0.5)

    def _read_status(self) -> None:
        # First our own pending entries (those claimed at takeover), paging by id; once
        # that history is empty, only new entries (">").
        cursor: str | bytes = "0"
        while not self._stop.is_set():
            if time.monotonic() >= self._next_trim:
                self._next_trim = time.monotonic() + TRIM_EVERY
                self._trim()
            try:
                reply = self.r.xreadgroup(GROUP, self.sid, {STATUS_QUEUE: cursor}, count=BATCH,
                                          block=None if cursor != ">" else 50)
                entries = reply[0][1] if reply else []
                fresh = cursor == ">"  # not the history claimed at takeover
                if not fresh:
                    cursor = entries[-1][0] if entries else ">"
                events = []
                for entry_id, fields in entries:
                    fields = fields or {}  # an entry deleted after its delivery has none
                    raw = fields.get(b"e") or fields.get("e")
                    try:
                        body, error = json.loads(raw), None
                    except (TypeError, ValueError) as exc:
                        body, error = None, f"undecodable status event: {exc}"
                    events.append(("status", {}, body, error, ("status", self, entry_id), raw))
                self._hand_on(events, offer=fresh)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.warning("reading status failed: %s", exc)
                    self._stop.wait(0.5)
                    continue
                log.warning("the status stream's consumer group is gone (Redis restarted); making it again")
                try:
                    self._ensure_group()
                    cursor = "0"  # entries claimed before are gone with the group: read anew
                except redis.RedisError as again:
                    log.warning("making the consumer group failed: %s", again)
                    self._stop.wait(0.5)
            except redis.RedisError as exc:
                log.warning("reading status failed: %s", exc)
                self._stop.wait(0.2)
            except Exception:
                log.exception("reading status failed")
                self._stop.wait(0.5)

    # ----------------------------------------------------------------- acks

    def _hand_on(self, events: list[tuple[Any, ...]], offer: bool) -> None:
        """To take_now if `offer` and every event this reader handed on before has been
        applied (the loop may hold one from the inbox and not yet have its turn), else, or if
        it refuses, to the inbox."""
        if not events:
            return
        kind = events[0][0]
        before = self._handed[kind]
        self._handed[kind] += len(events)
        if offer and self.take_now is not None and self._applied[kind] == before and self.take_now(events):
            return
        for event in events:
            self.inbox.put(event)

    def applied(self, kind: str) -> None:
        """The scheduler applied one of this term's events (in its turn)."""
        self._applied[kind] += 1

    def owns(self, token: tuple[Any, ...]) -> bool:
        """Whether a message was read in this leadership term (older ones were handed back)."""
        return token[1] is self

    def queue_acks(self, pipe: redis.client.Pipeline, tokens: Iterable[tuple[Any, ...]]) -> None:
        """Acknowledge what is now durable, on the caller's pipeline (after what it
        publishes): the whole batch in the tick's one round trip."""
        entries: list[Any] = []
        for token in tokens:
            if token[0] == "ingress":
                # Each message by its bytes, searched from the oldest end (where it nearly
                # always is): an ack sent twice (a pipeline resent after a dropped
                # connection) removes nothing else, where trimming by count would drop
                # messages not yet durable.
                pipe.lrem(self.processing, -1, token[2])
            else:
                entries.append(token[2])
        if entries:
            pipe.xack(STATUS_QUEUE, GROUP, *entries)

    def _trim(self) -> None:
        """Drop the status entries every leader has acknowledged: the stream then holds what
        is in flight, not its cap of a million (about 200 bytes each). Entries still pending
        (a dead leader's, which the next one claims) and those not yet read are kept."""
        try:
            pending = self.r.xpending(STATUS_QUEUE, GROUP)
            if pending["pending"]:
                oldest = pending["min"]
            else:
                groups = {g["name"]: g for g in self.r.xinfo_groups(STATUS_QUEUE)}
                oldest = groups[GROUP.encode() if GROUP.encode() in groups else GROUP]["last-delivered-id"]
            self.r.xtrim(STATUS_QUEUE, minid=oldest, approximate=True)
        except (redis.RedisError, KeyError) as exc:  # the next trim tries again
            log.info("trimming the status stream skipped: %s", exc)
