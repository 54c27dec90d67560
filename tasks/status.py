"""Status events from a worker to the scheduler, on the `corral.status` Redis stream.

Every event carries the attempt id; the scheduler ignores events of superseded
attempts, so a late worker can never overwrite a recorded outcome.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from corral.base.keys import STATUS_QUEUE

MAXLEN = 1_000_000  # approximate cap of the stream; the leader trims what it acknowledged far sooner
KINDS = ("started", "heartbeat", "progress", "checkpoint", "succeeded", "failed", "yielded", "warmed")


def status_event(
    kind: str, task_id: str, attempt_id: str, node: str, gpu: int, **extra: Any
) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown status kind {kind!r}")
    return {
        "kind": kind,
        "task_id": task_id,
        "attempt_id": attempt_id,
        "node": node,
        "gpu": gpu,
        "time": time.time(),
        **extra,
    }


def publish(client: redis.Redis | redis.client.Pipeline, event: dict[str, Any]) -> None:
    """Append an event to the `corral.status` stream (in a pipeline when one is given)."""
    client.xadd(STATUS_QUEUE, {"e": json.dumps(event, separators=(",", ":"))},
                maxlen=MAXLEN, approximate=True)
