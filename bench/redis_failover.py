"""Redis failover under load: the primary SIGKILLed while tasks flow, Sentinel promotes the
replica, and every process follows it.

    python bench/redis_failover.py [--kills 3] [--tasks 6000] [--every 12]

A local cluster with `redis_ha` (a Redis primary, a replica, three sentinels with a 1 s
down-after; 3 schedulers, 1 node with 4 simulated GPUs) runs --tasks `corral.sleep` tasks of
20 ms. The current primary is SIGKILLed --kills times, --every seconds apart (Sentinel
does not fail the same primary name over again within twice its failover-timeout, 10 s),
and restarted 2 s later (it comes back as a replica). For each kill the gap is the first
attempt started after the kill. Every task must end SUCCEEDED exactly once.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time

from corral.base import broker
from corral.client import Client
from corral.local import LocalCluster


def primary_name(cluster: LocalCluster) -> str:
    """Which of the cluster's two redis-servers Sentinel says is the primary now."""
    hosts, _, _ = broker.parse_sentinel(cluster.settings.broker)
    from redis.sentinel import Sentinel

    _, port = Sentinel(hosts, socket_timeout=1).discover_master(cluster.settings.redis_master)
    for p in cluster.procs:
        if p.role == "redis" and str(port) in p.args:
            return p.name
    raise RuntimeError(f"no redis-server of this cluster on port {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--every", type=float, default=12.0)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    gaps = []
    with tempfile.TemporaryDirectory(prefix="corral-redis-ha-") as tmp:
        cluster = LocalCluster(tmp, nodes=1, gpus=4, schedulers=3, flower=False, redis_ha=True).start()
        try:
            client = Client(cluster.settings)
            leader = client.status()["leader"]["id"]
            handles = client.map("corral.sleep", [{"seconds": 0.02, "i": i} for i in range(opts.tasks)])
            kills = []
            for _ in range(opts.kills):
                time.sleep(opts.every - 2.0)
                name = primary_name(cluster)
                kills.append((name, time.time()))
                cluster.kill(name, signal.SIGKILL)
                time.sleep(2.0)
                cluster.restart(name)
            records = client.wait(handles, timeout=600)
            same_leader = client.status()["leader"]["id"] == leader
            client.close()
        finally:
            cluster.stop()
    starts = sorted(a["started"] for r in records.values() for a in r["attempts"] if a.get("started"))
    for _, at in kills:
        later = [s for s in starts if s > at]
        gaps.append(later[0] - at if later else float("inf"))
    ok = sum(1 for r in records.values() if r["state"] == "SUCCEEDED"
             and [a["state"] for a in r["attempts"]].count("SUCCEEDED") == 1)
    for r in records.values():
        if r["state"] != "SUCCEEDED" or [a["state"] for a in r["attempts"]].count("SUCCEEDED") != 1:
            print(f"  not exactly once: {r['id']} {r['state']} {r.get('reason')} "
                  f"{[(a['id'], a['state'], (a.get('error') or {}).get('type')) for a in r['attempts']]}")
    for (name, _), gap in zip(kills, gaps, strict=True):
        print(f"  SIGKILL {name} (primary): next attempt started {gap:.2f} s later")
    print(f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s; tasks SUCCEEDED exactly once: "
          f"{ok}/{len(records)}; leader unchanged: {same_leader}")
    if opts.json:
        print(json.dumps({"gaps": gaps, "median": statistics.median(gaps), "max": max(gaps),
                          "succeeded_once": ok, "tasks": len(records), "same_leader": same_leader}))
    return 0 if ok == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
