"""`corral status`: the cluster as one JSON document (docs/contracts.md, CLI), read from etcd;
the schedulers' status page shows the same document."""

from __future__ import annotations

from typing import Any

from corral.base.etcd import get_json, prefix_json
from corral.base.keys import Keys


def cluster_status(etcd: Any, keys: Keys) -> dict[str, Any]:
    leader = get_json(etcd, keys.leader)
    schedulers = prefix_json(etcd, keys.scheduler())
    nodes = prefix_json(etcd, keys.node())
    health = prefix_json(etcd, keys.node_health())
    summary = get_json(etcd, keys.summary) or {}
    gpu_view = {(g["node"], g["index"]): g for g in summary.get("gpus", [])}
    leader_id = leader.get("id") if leader else None
    return {
        "leader": {"id": leader_id, "since": leader.get("since") if leader else None},
        "schedulers": [
            {"id": sid, "role": "leader" if sid == leader_id else "follower",
             "address": rec.get("address", "")}
            for sid, rec in sorted(schedulers.items())
        ],
        "nodes": [
            {
                "name": name,
                "state": (health.get(name) or {}).get("state", "up") if name in nodes else "lost",
                "reason": (health.get(name) or {}).get("reason", ""),
                "host": info.get("host"),
                "gpus": [
                    {
                        "index": g["index"],
                        "uuid": g.get("uuid"),
                        "model": g.get("model"),
                        "simulated": g.get("simulated", False),
                        **_gpu_view(gpu_view.get((name, g["index"]), {})),
                    }
                    for g in info.get("gpus", [])
                ],
            }
            for name, info in sorted({**{n: {} for n in health}, **nodes}.items())
        ],
        "sessions": summary.get("sessions", []),
        "tasks": summary.get(
            "tasks", {"pending": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0}
        ),
        "admission": summary.get("admission", {"open": True}),
        "recent": summary.get("recent", []),
    }


def _gpu_view(view: dict[str, Any]) -> dict[str, Any]:
    """What the leader's summary says of one GPU, with defaults for a GPU it has not seen."""
    return {"state": view.get("state", "healthy"), "session": view.get("session"),
            "consecutive_failures": view.get("consecutive_failures", 0),
            "outstanding": view.get("outstanding", 0), "reason": view.get("reason", "")}
