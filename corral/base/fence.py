"""Attempt fences in Redis, so that a worker never needs etcd.

The leader marks an attempt `superseded` (after recording that in etcd) when it re-routes
its task. A worker claims its attempt before running it with one atomic SET NX GET: an
unmarked attempt becomes `started` and runs; a superseded one is skipped; one already
`started` means an earlier run of this very attempt died with its process (the message
came back through Celery's reject-on-worker-lost), which is reported as a failed attempt.
The fence only saves GPU time: a late outcome is ignored by the leader in any case.
"""

from __future__ import annotations

from typing import Literal

import redis

TTL = 2 * 24 * 3600  # longer than the broker's visibility timeout
SUPERSEDED, STARTED = b"superseded", b"started"


def key(cluster: str, attempt_id: str) -> str:
    return f"corral:{cluster}:attempt:{attempt_id}"


def supersede(pipe: redis.client.Pipeline, cluster: str, attempt_id: str) -> None:
    pipe.set(key(cluster, attempt_id), SUPERSEDED, ex=TTL)


def claim_in(pipe: redis.client.Pipeline, cluster: str, attempt_id: str) -> None:
    """Queue a claim in a pipeline; read its reply with verdict()."""
    pipe.set(key(cluster, attempt_id), STARTED, nx=True, get=True, ex=TTL)


def verdict(before: bytes | None) -> Literal["run", "superseded", "lost"]:
    if before is None:
        return "run"
    return "superseded" if before == SUPERSEDED else "lost"
