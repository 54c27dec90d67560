"""The Celery app of the GPU workers (tasks/worker.py) and of Flower (tasks/flower.py); the
scheduler and the client write their messages without it (corral/base/wire.py).

Settings: JSON only, late acks, reject on a lost worker, prefetch 1 (docs/operations.md).
"""

from __future__ import annotations

from celery import Celery

from corral.base import broker, transport
from corral.base.config import Settings
from corral.base.keys import PRIORITY_STEPS, RUN_TASK


def make_app(settings: Settings | None = None, *, worker: bool = False) -> Celery:
    """`worker`: a GPU worker's app, on corral's transport (corral/base/transport.py); Flower
    keeps kombu's own, whose name it reads as the broker's kind."""
    settings = settings or Settings.from_env()
    app = Celery("corral", broker=settings.broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=settings.worker_events,
        task_send_sent_event=False,
        broker_connection_retry_on_startup=True,
        # Longer than any task: the scheduler, not kombu's restore, owns timeliness.
        broker_transport_options={"visibility_timeout": 12 * 3600,
                                  "priority_steps": PRIORITY_STEPS, "queue_order_strategy": "priority",
                                  **broker.transport_options(settings.broker, settings.redis_master)},
        worker_hijack_root_logger=False,
        task_routes={RUN_TASK: {"queue": "corral.unrouted"}},
    )
    if worker:
        app.conf.broker_transport = transport.for_url(settings.broker)  # one Redis client per channel
        app.conf.worker_pool = "corral.tasks.prefork:TaskPool"  # prefork, its writes not deferred
    app.corral_settings = settings  # type: ignore[attr-defined]
    return app
