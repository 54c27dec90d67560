"""Clients of the broker (Redis) from its URL: `redis://`, `rediss://` (TLS), or
`sentinel://` for a Redis watched by Sentinel, where every client asks the sentinels for
the current primary and follows a failover by itself.

A Sentinel URL lists the sentinels, kombu's way: `sentinel://[:PASSWORD@]HOST:PORT;
sentinel://[:PASSWORD@]HOST:PORT...[/DB]` (the password is the primary's); the primary's
name is the `CORRAL_REDIS_MASTER` setting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

log = logging.getLogger("corral.broker")

SENTINEL = "sentinel://"
Write = Callable[[Any], None]  # queues its commands on a pipeline


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL)


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str | None, int]:
    """(sentinels, the primary's password, db) of a Sentinel URL."""
    hosts: list[tuple[str, int]] = []
    password: str | None = None
    db = 0
    for part in url.split(";"):
        if not part.strip():
            continue
        parts = urlsplit(part.strip())
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ValueError(f"not a sentinel URL: {part!r}")
        hosts.append((parts.hostname, parts.port or 26379))
        if parts.password:
            password = unquote(parts.password)
        if parts.path.strip("/").isdigit():
            db = int(parts.path.strip("/"))
    if not hosts:
        raise ValueError(f"a sentinel URL names no sentinel: {url!r}")
    return hosts, password, db


def client(url: str, master: str = "mymaster", **options: Any) -> redis.Redis:
    """A Redis client of the broker; for Sentinel, one that always talks to the primary."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    hosts, password, db = parse_sentinel(url)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
                        **timeouts)
    return sentinel.master_for(master, password=password, db=db, **options)


def transport_options(url: str, master: str) -> dict[str, Any]:
    """kombu's transport options for the broker URL (Sentinel needs the primary's name)."""
    if is_sentinel(url):
        return {"master_name": master, "sentinel_kwargs": {"socket_timeout": 1.0}}
    return {}


def write_all(client: Any, writes: list[Write], deadline: float) -> None:
    """The writes in one pipeline, tried again on a lost connection (a broker restart or
    failover) until `deadline` (time.monotonic()); sent twice after a reply was lost, so
    each write must be harmless to repeat."""
    while True:
        try:
            with client.pipeline(transaction=False) as pipe:
                for write in writes:
                    write(pipe)
                pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Redis unreachable (%s); trying again", exc)
            time.sleep(0.2)
