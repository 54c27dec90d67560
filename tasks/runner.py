"""The one Celery task every GPU worker runs: execute an attempt of a corral task.

Before running, the attempt is claimed against its fence in Redis (corral/fence.py): an
attempt that the scheduler has since superseded (node loss, failover, quarantine) does
not run. Workers never talk to etcd.
A failure with local budget left is retried on the same GPU through Celery's retry, as
the next attempt id, after an exponential back-off; the `failed` event names that id so
the scheduler records the retry instead of routing the task elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Reject

from corral import fence
from corral.blobs import BlobStore
from corral.config import Settings
from corral.keys import RUN_TASK, WARM_TASK
from tasks import registry
from tasks.context import Context
from tasks.errors import error_info, is_device_error
from tasks.status import publish, status_event

log = logging.getLogger("corral.worker")

SIMULATED_CUDA_ERROR = (
    "CUDA error: an illegal memory access was encountered "
    "(simulated faulty GPU {node}:{gpu}, cudaErrorIllegalAddress)"
)
MAX_BACKOFF = 30.0


class SimulatedGpuFault(RuntimeError):
    """Raised on a simulated GPU listed in --faulty-gpus."""


class _Process:
    """Per-process clients, created lazily after the prefork pool has forked."""

    redis: Any = None
    blobs: BlobStore | None = None
    pid: int = 0

    @classmethod
    def ensure(cls, settings: Settings) -> None:
        if cls.pid != os.getpid():
            cls.redis = redis.Redis.from_url(settings.broker)
            cls.blobs = BlobStore(settings, cls.redis)
            cls.pid = os.getpid()


def backoff(msg: dict[str, Any]) -> float:
    base = float((msg.get("retry") or {}).get("backoff", 0.5) or 0.0)
    return min(MAX_BACKOFF, base * (2 ** int(msg.get("local_try", 0))))


class _Heartbeat(threading.Thread):
    def __init__(self, every: float, make_event: Any) -> None:
        super().__init__(daemon=True, name="corral-heartbeat")
        self.every, self.make_event = every, make_event
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                publish(_Process.redis, self.make_event("heartbeat"))
            except Exception:  # a missed beat is survivable; the next one retries
                log.exception("heartbeat publish failed")


def execute(app: Celery, msg: dict[str, Any]) -> dict[str, Any] | None:
    """Run one attempt; return the message of a local retry to re-queue, if any."""
    settings: Settings = app.corral_settings  # type: ignore[attr-defined]
    _Process.ensure(settings)
    task_id, attempt_id = msg["task_id"], msg["attempt_id"]
    node = os.environ.get("CORRAL_NODE", msg.get("node", ""))
    gpu = int(os.environ.get("CORRAL_GPU_INDEX", msg.get("gpu", -1)))

    def event(kind: str, **extra: Any) -> dict[str, Any]:
        return status_event(kind, task_id, attempt_id, node, gpu, **extra)

    try:
        seen = fence.claim(_Process.redis, settings.cluster, attempt_id)
    except redis.RedisError as exc:
        log.warning("cannot claim attempt %s of %s (%s); requeueing", attempt_id, task_id, exc)
        time.sleep(0.5)
        raise Reject(f"Redis unreachable: {exc}", requeue=True) from exc
    if seen == "superseded":
        log.info("attempt %s of task %s is superseded; not running it", attempt_id, task_id)
        return None
    if seen == "lost":
        publish(_Process.redis, event("failed", error={
            "type": "WorkerLost",
            "message": "the worker process running this attempt died (killed or out of memory)"}))
        return None

    publish(_Process.redis, event("started", pid=os.getpid()))
    beat = _Heartbeat(settings.heartbeat, event)
    beat.start()
    try:
        wait = float(msg.get("not_before", 0)) - time.time()
        if wait > 0:
            time.sleep(min(wait, MAX_BACKOFF))
        if os.environ.get("CORRAL_FAULTY") == "1":
            raise SimulatedGpuFault(SIMULATED_CUDA_ERROR.format(node=node, gpu=gpu))
        algo = registry.get(msg["algorithm"])
        ctx = Context(
            task_id=task_id, attempt_id=attempt_id, node=node, gpu=gpu,
            session=msg.get("session", ""), number=int(msg.get("number", 1)), state=algo.warm(),
            checkpoint=msg.get("checkpoint"),
            _progress=lambda info: publish(_Process.redis, event("progress", info=info)),
        )
        value = algo.fn(msg.get("args"), ctx)
        encoded = json.dumps(value)  # a result that is not JSON fails the attempt here
    except Exception as exc:
        beat.stopped.set()
        error = error_info(exc)
        log.info("attempt %s of task %s failed: %s", attempt_id, task_id, exc)
        local = int((msg.get("retry") or {}).get("local", 2))
        tries = int(msg.get("local_try", 0))
        if is_device_error(error) or tries >= local:
            publish(_Process.redis, event("failed", error=error))
            return None
        number = int(msg.get("number", 1)) + 1
        follow = {**msg, "attempt_id": f"{task_id}.a{number}", "number": number,
                  "local_try": tries + 1}
        follow["not_before"] = time.time() + backoff(follow | {"local_try": tries})
        publish(_Process.redis, event("failed", error=error, retry_as=follow["attempt_id"]))
        return follow
    beat.stopped.set()
    assert _Process.blobs is not None
    with _Process.redis.pipeline(transaction=False) as pipe:  # result and outcome: one round trip
        ref = _Process.blobs.put_result(task_id, attempt_id, encoded, pipe)
        publish(pipe, event("succeeded", result_ref=ref))
        pipe.execute()
    return None


def warm_up(app: Celery, msg: dict[str, Any]) -> None:
    """Run the session's algorithms' setup() in this worker process before its first task."""
    settings: Settings = app.corral_settings  # type: ignore[attr-defined]
    _Process.ensure(settings)
    node = os.environ.get("CORRAL_NODE", msg.get("node"))
    gpu = int(os.environ.get("CORRAL_GPU_INDEX", msg.get("gpu", -1)))
    beat = _Heartbeat(settings.heartbeat, lambda kind: {"kind": kind, "node": node, "gpu": gpu,
                                                        "time": time.time()})
    beat.start()  # model loading can take minutes: the scheduler must know the worker lives
    ready = []
    try:
        for name in msg.get("algorithms", []):
            try:
                registry.get(name).warm()
                ready.append(name)
            except Exception:
                log.exception("warm-up of %s failed", name)
    finally:
        beat.stopped.set()
    publish(_Process.redis, {
        "kind": "warmed", "node": node, "gpu": gpu,
        "session": msg.get("session"), "algorithms": ready, "generation": msg.get("generation"),
        "time": time.time(),
    })


def register(app: Celery) -> None:
    @app.task(name=RUN_TASK, bind=True, acks_late=True, ignore_result=True)
    def run(self: Any, **msg: Any) -> None:
        follow = execute(app, msg)
        if follow is not None:
            raise self.retry(kwargs=follow, countdown=0, max_retries=None)

    @app.task(name=WARM_TASK, acks_late=True, ignore_result=True)
    def warm(**msg: Any) -> None:
        warm_up(app, msg)
