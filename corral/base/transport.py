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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.commands.core import Script

from corral.base import broker

# KEYS: kombu's unacked index (sorted set) and unacked hash. ARGV: time, tag, what kombu stores.
_RECORD = Script(None, b"""
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
""")  # type: ignore[arg-type]
# KEYS: the same. ARGV[1]: the delivery's tag.
_FORGET = Script(None, b"""
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
""")  # type: ignore[arg-type]


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, a delivery recorded and forgotten in one Lua call each."""

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        with self.channel.conn_or_acquire() as client:
            _RECORD(keys=[self.unacked_index_key, self.unacked_key],
                    args=[time(), delivery_tag,
                          dumps([message._raw, delivery["exchange"], delivery["routing_key"]])],
                    client=client)
        virtual.QoS.append(self, message, delivery_tag)

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


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def for_url(url: str) -> str:
    """The transport for a broker URL, as Celery's `broker_transport` setting names it."""
    return f"{__name__}:{'SentinelTransport' if broker.is_sentinel(url) else 'Transport'}"
