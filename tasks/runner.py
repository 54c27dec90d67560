"""The one Celery task every GPU worker runs: execute an attempt of a corral task.

Before running, the attempt is checked against the task record in etcd: an attempt
that the scheduler has since superseded (node loss, failover) does not run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from typing import Any

from celery import Celery
from celery.exceptions import Reject

from corral.blobs import BlobStore
from corral.config import Settings
from corral.etcd import connect, get_json
from corral.keys import RUN_TASK, Keys
from tasks import registry
from tasks.context import Context
from tasks.status import publish, status_event

log = logging.getLogger("corral.worker")

SIMULATED_CUDA_ERROR = (
    "CUDA error: an illegal memory access was encountered "
    "(simulated faulty GPU {node}:{gpu}, cudaErrorIllegalAddress)"
)


class SimulatedGpuFault(RuntimeError):
    """Raised on a simulated GPU listed in --faulty-gpus."""


class _Process:
    """Per-process clients, created lazily after the prefork pool has forked."""

    etcd: Any = None
    blobs: BlobStore | None = None
    pid: int = 0

    @classmethod
    def ensure(cls, settings: Settings) -> None:
        if cls.pid != os.getpid():
            cls.etcd = connect(settings)
            cls.blobs = BlobStore(settings)
            cls.pid = os.getpid()


def attempt_is_current(settings: Settings, task_id: str, attempt_id: str) -> bool:
    record = get_json(_Process.etcd, Keys(settings.cluster).task(task_id))
    return bool(record) and record.get("current_attempt") == attempt_id and record.get(
        "state"
    ) in ("QUEUED", "RUNNING")


def error_info(exc: BaseException) -> dict[str, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-4000:]}


class _Heartbeat(threading.Thread):
    def __init__(self, app: Celery, every: float, make_event: Any) -> None:
        super().__init__(daemon=True, name="corral-heartbeat")
        self.app, self.every, self.make_event = app, every, make_event
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                publish(self.app, self.make_event("heartbeat"))
            except Exception:  # a missed beat is survivable; the next one retries
                log.exception("heartbeat publish failed")


def execute(app: Celery, msg: dict[str, Any]) -> None:
    settings: Settings = app.corral_settings  # type: ignore[attr-defined]
    _Process.ensure(settings)
    task_id, attempt_id = msg["task_id"], msg["attempt_id"]
    node = os.environ.get("CORRAL_NODE", msg.get("node", ""))
    gpu = int(os.environ.get("CORRAL_GPU_INDEX", msg.get("gpu", -1)))

    def event(kind: str, **extra: Any) -> dict[str, Any]:
        return status_event(kind, task_id, attempt_id, node, gpu, **extra)

    try:
        current = attempt_is_current(settings, task_id, attempt_id)
    except Exception as exc:
        log.warning("cannot confirm attempt %s of %s (%s); requeueing", attempt_id, task_id, exc)
        time.sleep(0.5)
        raise Reject(f"etcd unreachable: {exc}", requeue=True) from exc
    if not current:
        log.info("attempt %s of task %s is superseded; not running it", attempt_id, task_id)
        return

    publish(app, event("started", pid=os.getpid()))
    beat = _Heartbeat(app, settings.heartbeat, event)
    beat.start()
    try:
        if os.environ.get("CORRAL_FAULTY") == "1":
            raise SimulatedGpuFault(SIMULATED_CUDA_ERROR.format(node=node, gpu=gpu))
        algo = registry.get(msg["algorithm"])
        ctx = Context(
            task_id=task_id,
            attempt_id=attempt_id,
            node=node,
            gpu=gpu,
            session=msg.get("session", ""),
            state=algo.warm(),
            checkpoint=msg.get("checkpoint"),
            _progress=lambda info: publish(app, event("progress", info=info)),
        )
        value = algo.fn(msg.get("args"), ctx)
        assert _Process.blobs is not None
        ref = _Process.blobs.put_result(task_id, attempt_id, value)
    except Exception as exc:
        beat.stopped.set()
        log.info("attempt %s of task %s failed: %s", attempt_id, task_id, exc)
        publish(app, event("failed", error=error_info(exc)))
        return
    beat.stopped.set()
    publish(app, event("succeeded", result_ref=ref))


def register(app: Celery) -> None:
    @app.task(name=RUN_TASK, bind=True, acks_late=True, ignore_result=True)
    def run(self: Any, **msg: Any) -> None:
        execute(app, msg)
