"""Status events from a worker to the scheduler, on the `corral.status` queue.

Every event carries the attempt id; the scheduler ignores events of superseded
attempts, so a late worker can never overwrite a recorded outcome.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from kombu import Queue

from corral.keys import STATUS_QUEUE

STATUS = Queue(STATUS_QUEUE, routing_key=STATUS_QUEUE)
KINDS = ("started", "heartbeat", "progress", "checkpoint", "succeeded", "failed")


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


def publish(app: Celery, event: dict[str, Any]) -> None:
    with app.producer_or_acquire() as producer:
        producer.publish(
            event,
            exchange="",
            routing_key=STATUS_QUEUE,
            serializer="json",
            declare=[STATUS],
            retry=True,
            retry_policy={"max_retries": 20, "interval_start": 0.1, "interval_step": 0.2},
        )
