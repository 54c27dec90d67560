"""A job attempt's output in Redis: one stream per attempt, `corral:<cluster>:log:<attempt>`,
of pieces of at most PIECE bytes, trimmed to about `limit` bytes (the oldest output goes
first) and kept as long as results are. Any machine that reaches Redis reads it
(`corral job logs`), during the run and after, for every attempt."""

from __future__ import annotations

from typing import Any

import redis

PIECE = 4096


def key(cluster: str, attempt_id: str) -> str:
    return f"corral:{cluster}:log:{attempt_id}"


def append(pipe: redis.client.Pipeline, cluster: str, attempt_id: str, data: bytes, limit: int,
           ttl: int) -> None:
    name = key(cluster, attempt_id)
    for i in range(0, len(data), PIECE):
        pipe.xadd(name, {"d": data[i:i + PIECE]}, maxlen=max(1, limit // PIECE), approximate=True)
    pipe.expire(name, ttl)


def read(client: redis.Redis, cluster: str, attempt_id: str, after: str = "0-0") -> list[tuple[str, bytes]]:
    """Pieces after the entry id `after` ("0-0": from the start), oldest first."""
    entries = client.xrange(key(cluster, attempt_id), f"({after}")  # exclusive of `after`
    return [(_id(i), fields.get(b"d", b"")) for i, fields in entries]


def wait(client: redis.Redis, cluster: str, attempt_id: str, after: str,
         block_ms: int) -> list[tuple[str, bytes]]:
    """Pieces after `after` ("0-0": from the start), waiting up to `block_ms` for some."""
    got: Any = client.xread({key(cluster, attempt_id): after}, block=block_ms)
    return [(_id(i), fields.get(b"d", b"")) for _, entries in got or () for i, fields in entries]


def _id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
