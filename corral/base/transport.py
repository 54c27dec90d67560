"""kombu's Redis transports, with one Redis client per channel instead of one per message.

kombu's Redis channel builds a new redis-py client whenever it records a delivery and
whenever it acknowledges one (`Channel.conn_or_acquire`). The client is only a handle on
the channel's connection pool, but redis-py's constructor builds its table of reply
callbacks each time: a sixth of what a GPU worker's main process spent on a short task's
message (py-spy, docs/benchmarks.md). A redis-py client is thread-safe and holds no
connection of its own, so the channel keeps one, and makes it again when kombu replaces
its pool (after a lost connection, or a Sentinel failover).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

from corral.base import broker


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
    pass


class SentinelChannel(_OneClient, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def for_url(url: str) -> str:
    """The transport for a broker URL, as Celery's `broker_transport` setting names it."""
    return f"{__name__}:{'SentinelTransport' if broker.is_sentinel(url) else 'Transport'}"
