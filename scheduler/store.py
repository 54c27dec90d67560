"""The leader's view of etcd: fenced, batched writes and whole-prefix reads.

Every write is a transaction that compares the `leader` key's create_revision with
the token this replica won the election with; a deposed leader's write fails as a
whole and raises Fenced, upon which the service stops acting.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from corral.base.etcd import prefix_json
from corral.base.keys import Keys
from corral.scheduler.core.effects import Effects

if TYPE_CHECKING:
    from etcd3.client import MultiEndpointEtcd3Client

MAX_OPS = 100  # etcd's default --max-txn-ops is 128
MAX_BYTES = 1 << 20  # etcd's default request limit is 1.5 MiB


class Fenced(RuntimeError):
    """A write was refused because this replica no longer holds the leadership."""


def encode(value: Any) -> bytes:
    if is_dataclass(value) and not isinstance(value, type):
        value = value.to_dict() if hasattr(value, "to_dict") else asdict(value)
    return json.dumps(value, separators=(",", ":")).encode()


class Store:
    def __init__(self, client: MultiEndpointEtcd3Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def write(self, token: int, writes: dict[str, Any]) -> int:
        """Commit `writes` (key -> value, None deletes) fenced by `token`; returns ops written."""
        ops: list[Any] = []
        size = 0
        done = 0
        for key, value in writes.items():
            if value is None:
                op, n = self.client.transactions.delete(key), len(key)
            else:
                data = encode(value)
                op, n = self.client.transactions.put(key, data), len(key) + len(data)
            if ops and (len(ops) >= MAX_OPS or size + n > MAX_BYTES):
                self._commit(token, ops)
                done += len(ops)
                ops, size = [], 0
            ops.append(op)
            size += n
        if ops:
            self._commit(token, ops)
            done += len(ops)
        return done

    def _commit(self, token: int, ops: list[Any]) -> None:
        ok, _ = self.client.transaction(
            compare=[self.client.transactions.create(self.keys.leader) == token],
            success=ops,
            failure=[],
        )
        if not ok:
            raise Fenced(f"leader token {token} is no longer current")

    def read_prefix(self, prefix: str) -> dict[str, Any]:
        return prefix_json(self.client, prefix)


def dispatch_first(fx: Effects, keys: Keys, writes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tick's writes in two parts when they take more than one transaction and its Redis
    side is only dispatches: what those dispatches depend on (the records of the tasks they
    carry, and plans, health and sessions), and the rest (new submissions, outcomes). The
    shell publishes after the first part, so that a GPU does not wait for the records of a
    burst of submissions to start its next message. Otherwise `({}, writes)`: one piece."""
    if (len(writes) <= MAX_OPS or not fx.dispatches or fx.fences or fx.unfences or fx.stops
            or fx.checkpoint_requests or fx.stale_checkpoints):
        return {}, writes
    first = {keys.task(m["task_id"]) for d in fx.dispatches if not d.warm
             for m in d.message.get("batch") or (d.message,)}
    task_prefix = keys.task()
    head = {k: v for k, v in writes.items() if k in first or not k.startswith(task_prefix)}
    if len(head) == len(writes):
        return {}, writes
    return head, {k: v for k, v in writes.items() if k not in head}


def etcd_writes(fx: Effects, keys: Keys, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The core's typed writes under their etcd keys (None deletes), then `extra`."""
    out: dict[str, Any] = {}
    for (node, index), info in fx.plans.items():
        out[keys.plan(node, index)] = info
    for (node, index), health in fx.gpu_health.items():
        out[keys.gpu_health(node, index)] = health
    for name, health in fx.node_health.items():
        out[keys.node_health(name)] = health
    for name, record in fx.sessions.items():
        out[keys.session(name)] = record
    for task_id, task in fx.tasks.items():
        out[keys.task(task_id)] = task
    for name in fx.chunks:
        out[keys.done(name)] = None
    if extra:
        out.update(extra)
    return out
