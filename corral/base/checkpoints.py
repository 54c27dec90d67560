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
"""

from __future__ import annotations

import time

import redis

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
