"""The Redis side of a tick's effects, queued on one pipeline: fences of superseded
attempts, checkpoint and stop requests, and the GPU-queue messages, each attempt's fence
issued in the same round trip as its message. The shell calls it only for what etcd
already holds (service.py)."""

from __future__ import annotations

from typing import Any

from corral.base import checkpoints, fence
from corral.base.keys import NORMAL, RUN_TASK, URGENT, WARM_TASK, gpu_queue
from corral.base.wire import encode_task
from corral.scheduler.core.effects import Effects


def queue_effects(pipe: Any, cluster: str, origin: str, fx: Effects) -> None:
    for attempt_id in fx.fences:
        fence.supersede(pipe, cluster, attempt_id)
    for task_id in fx.checkpoint_requests:
        checkpoints.request(pipe, cluster, task_id)
    for attempt_id, grace in fx.stops:
        checkpoints.ask_stop(pipe, cluster, attempt_id, grace)
    if fx.stale_checkpoints:
        pipe.delete(*fx.stale_checkpoints)
    for i in range(0, len(fx.unfences), 1000):
        pipe.delete(*(fence.key(cluster, a) for a in fx.unfences[i:i + 1000]))
    for d in fx.dispatches:
        if not d.warm:  # only what the leader issued runs, as it issued it
            for m in d.message.get("batch") or (d.message,):
                fence.issue(pipe, cluster, m["attempt_id"], m)
        key, payload = encode_task(gpu_queue(*d.gpu), WARM_TASK if d.warm else RUN_TASK, d.id,
                                   d.message, URGENT if d.urgent else NORMAL, origin)
        pipe.lpush(key, payload)
