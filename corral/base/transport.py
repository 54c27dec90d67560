"""kombu's Redis transports, with one Redis client per channel instead of one per message,
and one command to record or forget a delivery instead of a transaction of four.

kombu's Redis channel builds a new redis-py client whenever it records a delivery and
whenever it acknowledges one (`Channel.conn_or_acquire`). The client is only a handle on
the channel's connection pool, but redis-py's constructor builds its table of reply
callbacks each time: a sixth of what a GPU worker's main process spent on a short task's
message (py-spy, docs/benchmarks.md). A redis-py client is thread-safe and holds no
connection of its own, so the channel keeps one, and makes it again when kombu replaces
its pool (after a lost connection, or a Sentinel failover).

kombu keeps each unacknowledged delivery in a sorted set and a hash (for its restore after
a lost connection or the visibility timeout), written and cleared with MULTI, two
commands, EXEC: a third of that main process's time. The same two writes, as atomic,
go in one Lua call each here; the keys and the stored value are kombu's, so its restore
reads them unchanged.

A delivery may carry more atomic work in the same call: compare-and-set writes that a hook
(`on_delivery`) asks for as the message is taken. The GPU worker claims its attempts' fences
so (corral/tasks/claims.py): the round trip its child would spend on them is gone. In a worker's
event loop the call is sent and the message handed on at once: the answer is read when it comes,
while the pool's child is still taking the message, so the round trip costs the message
nothing. The record is sent before the message is handed on either way, so kombu's restore
finds it as before.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.commands.core import Script

from corral.base import broker, swaps

log = logging.getLogger("corral.transport")

# KEYS: kombu's unacked index (sorted set) and unacked hash, then the keys of any swaps.
# ARGV: time, tag, what kombu stores, then (expected, new, ttl) for each swap. Returns what
# each swap's key held before (nil where it held nothing).
_RECORD_LUA = b"""
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
""" + swaps.lua(3, 4)
_RECORD = Script(None, _RECORD_LUA)  # type: ignore[arg-type]
# KEYS: the same. ARGV[1]: the delivery's tag.
_FORGET = Script(None, b"""
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
""")  # type: ignore[arg-type]


@dataclass
class Swaps:
    """Compare-and-set writes made atomically with a delivery's record: each key that holds
    its `expected` value is set to its `new` one, for `ttl` seconds; `then` gets what each
    key held before (None: nothing), in a worker's event loop once the message has been
    handed on, and not at all if the answer is lost."""

    keys: list[str]
    expected: list[bytes]
    new: list[bytes]
    ttl: int
    then: Callable[[list[bytes | None]], None]


on_delivery: Callable[[Any], Swaps | None] | None = None  # set by the GPU worker's main process
_loop: Any = None  # the worker's event loop (kombu's hub), once the transport runs in one


class _Later:
    """Calls sent on a connection of their own, whose answers the event loop reads as they
    come, in order (Redis answers one connection's commands in the order they were sent)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.conn: Any = None
        self.fd: int | None = None
        self.loop: Any = None
        self.waiting: deque[Callable[[list[bytes | None]], None]] = deque()

    def send(self, keys: list[Any], args: list[Any], then: Callable[[list[bytes | None]], None]) -> None:
        try:
            if self.conn is None:  # connected as the pool's own are (a Sentinel's asks for the master)
                self.conn = self.pool.make_connection()
                self.conn.health_check_interval = 0  # its PING would read an answer still due
                self.conn.connect()
            self.conn.send_command("EVAL", _RECORD_LUA, len(keys), *keys, *args)
        except Exception:
            self._drop()
            raise
        self.waiting.append(then)
        fd = self.conn._sock.fileno()
        # Watched again unless the loop still watches it for us: Celery resets its event loop
        # (every reader gone) when its consumer restarts after an error.
        watched = getattr(_loop, "readers", {}).get(fd) or (None,)
        if fd != self.fd or self.loop is not _loop or watched[0] != self._readable:
            self.fd, self.loop = fd, _loop
            _loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            while self.waiting:
                try:
                    reply: Any = self.conn.read_response()
                except redis.ResponseError as exc:  # this call failed (Redis full ...), not the link
                    reply = exc
                then = self.waiting.popleft()
                try:
                    if isinstance(reply, Exception):
                        log.warning("a delivery's record and claims failed: %s", reply)
                    else:
                        then(list(reply))
                except Exception:
                    log.exception("handling a delivery's swaps failed")
                if not self.conn.can_read(timeout=0):
                    break
        except Exception as exc:  # whoever waits for these answers gives up on them in time
            log.warning("the answer to %d delivery record(s) was lost: %s", len(self.waiting), exc)
            self._drop()
            return
        if not self.waiting:
            self._unwatch()

    def _unwatch(self) -> None:
        if self.fd is not None and self.loop is not None:
            self.loop.remove_reader(self.fd)
        self.fd = None

    def _drop(self) -> None:
        self._unwatch()
        self.waiting.clear()
        if self.conn is not None:
            self.conn.disconnect()
            self.conn = None


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, a delivery recorded and forgotten in one Lua call each."""

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        keys: list[Any] = [self.unacked_index_key, self.unacked_key]
        # The record is the message as delivered, taken before the hook may add headers:
        # what kombu restores must not bring this delivery's verdicts back with it.
        args: list[Any] = [time(), delivery_tag,
                           dumps([message._raw, delivery["exchange"], delivery["routing_key"]])]
        asked = on_delivery(message) if on_delivery is not None else None
        if asked is not None:
            keys += asked.keys
            args += swaps.argv(asked.expected, asked.new, asked.ttl)
        with self.channel.conn_or_acquire() as client:
            if asked is not None and _loop is not None:
                self._later(client.connection_pool).send(keys, args, asked.then)
            else:
                before = _RECORD(keys=keys, args=args, client=client)
                if asked is not None:
                    asked.then(list(before))
        virtual.QoS.append(self, message, delivery_tag)

    _corral_later: _Later | None = None

    def _later(self, pool: Any) -> _Later:
        later = self._corral_later
        if later is None or later.pool is not pool:  # kombu replaced the pool: a new connection
            if later is not None:
                later._drop()
            later = self._corral_later = _Later(pool)
        return later

    def ack(self, delivery_tag: str) -> None:
        with self.channel.conn_or_acquire() as client:
            _FORGET(keys=[self.unacked_index_key, self.unacked_key], args=[delivery_tag], client=client)
        virtual.QoS.ack(self, delivery_tag)


class _OneClient:
    """Mixed into a kombu Redis channel: `conn_or_acquire` hands out the channel's client."""

    _corral_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # type: ignore[attr-defined]
        cached = self._corral_client
        if cached is None or cached.connection_pool is not pool:
            cached = self._corral_client = self._create_client()  # type: ignore[attr-defined]
        yield cached


class Channel(_OneClient, kombu_redis.Channel):
    QoS = QoS


class SentinelChannel(_OneClient, kombu_redis.SentinelChannel):
    QoS = QoS


class _InLoop:
    """Mixed into a kombu Redis transport: remembers the event loop it was registered with."""

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        global _loop
        super().register_with_event_loop(connection, loop)  # type: ignore[misc]
        _loop = loop


class Transport(_InLoop, kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(_InLoop, kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def for_url(url: str) -> str:
    """The transport for a broker URL, as Celery's `broker_transport` setting names it."""
    return f"{__name__}:{'SentinelTransport' if broker.is_sentinel(url) else 'Transport'}"
