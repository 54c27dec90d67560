"""Checkpoints (M2): where a task's saved state lives, and how one is asked for.

A checkpoint is a JSON value an algorithm saves through `ctx.save_checkpoint(state)`,
kept in Redis under a key of its own attempt (`corral:<cluster>:checkpoint:<attempt>:<n>`),
so that a superseded attempt can never overwrite what the current one saved. Its reference
reaches the leader as a `checkpoint` status event and goes into the task record; every
later attempt (a local retry, another host after a failure or a node loss) starts from
it as `ctx.checkpoint`.

Asking: a request is a key `corral:<cluster>:checkpoint-request:<task>` holding the time it
was made. The leader sets it periodically for running tasks (CORRAL_CHECKPOINT_EVERY) and
an operator on demand (`corral checkpoint TASK`); a checkpointable algorithm polls
`ctx.checkpoint_requested()` between steps. Workers never talk to etcd.

Stopping (a move: a node drain, `corral task migrate`): a key
`corral:<cluster>:stop:<attempt>` holding the grace period in seconds. The worker asks for
a checkpoint, waits up to the grace period, stops the attempt and reports it `yielded`.
"""

from __future__ import annotations

import time

import redis

from corral.base import fence

REQUEST_TTL = 3600


def key(cluster: str, attempt_id: str, number: int) -> str:
    return f"corral:{cluster}:checkpoint:{attempt_id}:{number}"


def request_key(cluster: str, task_id: str) -> str:
    return f"corral:{cluster}:checkpoint-request:{task_id}"


def request(client: redis.Redis | redis.client.Pipeline, cluster: str, task_id: str,
            at: float | None = None) -> None:
    client.set(request_key(cluster, task_id), repr(time.time() if at is None else at), ex=REQUEST_TTL)


def requested_since(client: redis.Redis, cluster: str, task_id: str, since: float) -> bool:
    """Whether a checkpoint was asked for after `since` (the last one saved, or the start)."""
    raw = client.get(request_key(cluster, task_id))
    return raw is not None and float(raw) > since


def stop_key(cluster: str, attempt_id: str) -> str:
    return f"corral:{cluster}:stop:{attempt_id}"


def ask_stop(client: redis.Redis | redis.client.Pipeline, cluster: str, attempt_id: str,
             grace: float) -> None:
    client.set(stop_key(cluster, attempt_id), repr(float(grace)), ex=REQUEST_TTL)


def signals(client: redis.Redis, cluster: str, task_id: str, attempt_id: str,
            since: float) -> tuple[bool, float | None, bool]:
    """What a running attempt is asked, in one round trip: a checkpoint (made after
    `since`), to stop within a grace period (seconds, or None), and whether it was
    superseded (cancelled, or re-routed: its outcome will be ignored)."""
    asked, stop, fenced = client.mget(request_key(cluster, task_id), stop_key(cluster, attempt_id),
                                      fence.key(cluster, attempt_id))
    try:
        grace = None if stop is None else float(stop)
    except ValueError:
        grace = None
    return (asked is not None and float(asked) > since), grace, fenced == fence.SUPERSEDED
