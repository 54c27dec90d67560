"""Attempt fences in Redis, so that a worker never needs etcd.

Only work the leader issued runs, exactly as it issued it. The leader marks every attempt
`issued:<digest of its message>` in the same Redis round trip that publishes it, after
recording it in etcd; it marks an attempt `superseded`
(after recording that) when it re-routes the task. A worker claims its attempt before
running it, atomically (its main process as it takes the message, for the child that will
run it: corral/tasks/claims.py): an attempt issued with this very message becomes
`started` and runs; a superseded one
is skipped; one already `started` by a process that is gone means an earlier run of this
very attempt died with its process (the message came back through Celery's
reject-on-worker-lost), which is reported as a failed attempt, while one started by a
process still alive is a second delivery of the same message (a publish repeated after a
broker failure) and is skipped; one with no fence, or issued with another message, was not issued by
a leader (someone else put it on a GPU queue, or changed it on the way) and is refused.
A late outcome is ignored by the leader in any case: the fence saves GPU time and keeps
forged work off the GPUs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any, Literal

import redis

from corral.base import swaps
from corral.base.process import alive

TTL = 2 * 24 * 3600  # longer than the broker's visibility timeout
ISSUED, SUPERSEDED, STARTED = b"issued:", b"superseded", b"started"
Verdict = Literal["run", "superseded", "lost", "forged", "duplicate"]

def key(cluster: str, attempt_id: str) -> str:
    return f"corral:{cluster}:attempt:{attempt_id}"


def refused_key(cluster: str) -> str:
    """A counter of attempts that workers refused to run because no leader issued them."""
    return f"corral:{cluster}:refused"


def digest(message: dict[str, Any]) -> str:
    """What the fence remembers of an attempt's message: changed on the way, it won't run."""
    data = json.dumps(message, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def issue(pipe: redis.client.Pipeline, cluster: str, attempt_id: str, message: dict[str, Any]) -> None:
    pipe.set(key(cluster, attempt_id), issued(digest(message)), ex=TTL, nx=True)


def supersede(pipe: redis.client.Pipeline, cluster: str, attempt_id: str) -> None:
    pipe.set(key(cluster, attempt_id), SUPERSEDED, ex=TTL)


def claimer(client: redis.Redis) -> str:
    """Load the claim script (compare-and-set swaps, corral/base/swaps.py); its SHA. Load it
    again after a NoScriptError (a Redis that restarted without it): a claim is called by SHA
    in the worker's pipeline, which spares the round trip redis-py's own script objects spend
    checking for it on every call."""
    return str(client.script_load(swaps.SCRIPT))


def claim_in(pipe: redis.client.Pipeline, sha: str, cluster: str, msgs: list[dict[str, Any]]) -> list[str]:
    """Queue the claims of these attempts, each with the message it came in, in one call; its
    reply is what each fence held before: read it with verdict(before, the digest returned
    here)."""
    mine = [digest(m) for m in msgs]
    args = swaps.argv([issued(d) for d in mine], [started_by(os.getpid())] * len(msgs), TTL)
    pipe.evalsha(sha, len(msgs), *(key(cluster, m["attempt_id"]) for m in msgs), *args)
    return mine


def issued(mine: str) -> bytes:
    """What a fence holds while its attempt waits to be claimed with the message `mine`."""
    return ISSUED + mine.encode()


def started_by(pid: int) -> bytes:
    """What a fence holds once process `pid` of this host has claimed its attempt."""
    return STARTED + b":" + _me().rpartition(b":")[0] + b":" + str(pid).encode()


def verdict(before: bytes | None, mine: str) -> Verdict:
    if before == issued(mine):
        return "run"
    if before is None or before.startswith(ISSUED):
        return "forged"
    if before == SUPERSEDED:
        return "superseded"
    host, _, pid = before[len(STARTED) + 1:].rpartition(b":")
    if host == _me().rpartition(b":")[0] and pid.isdigit() and alive(int(pid)):
        return "duplicate"
    return "lost"


_ME: tuple[int, bytes] = (0, b"")


def _me() -> bytes:
    """`host:pid` of this process (computed once per process: claims are on the hot path)."""
    global _ME
    if _ME[0] != os.getpid():
        _ME = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}".encode())
    return _ME[1]
