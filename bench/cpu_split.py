"""Where the CPU goes per task: each process of a local cluster, over one burst.

    python bench/cpu_split.py [--tasks 2000] [--gpus 4] [--batch-max N] [--idle SECONDS]

Starts a local cluster (3 schedulers, 1 node with N simulated GPUs), submits a burst of
trivial tasks with Client.map, waits for them, and prints each role's CPU milliseconds per
task (user + system, from /proc), the leader's included. The figure behind the
throughput gap in docs/benchmarks.md. With --idle, it also prints what each process
spends, in percent of a core, while the cluster has nothing to do (what a machine pays
for running corral, and what a CPU-bound model on the same cores loses to it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from corral.base.config import Settings
from corral.client import Client
from corral.local import LocalCluster


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            pass
    return sorted(set(out))


def sample(cluster: LocalCluster) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for proc in cluster.procs:
        for pid in tree(proc.pid):
            out[proc.role if proc.role not in ("scheduler", "node") else proc.name] += cpu_seconds(pid)
    out["client (this process)"] = cpu_seconds(os.getpid())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--batch-max", type=int, default=None, help="CORRAL_BATCH_MAX (1: batching off)")
    parser.add_argument("--idle", type=float, default=0.0, help="also measure this many idle seconds")
    opts = parser.parse_args()
    idle: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="corral-cpu-") as tmp:
        settings = Settings(cluster="local").with_(batch_max=opts.batch_max)
        cluster = LocalCluster(Path(tmp), nodes=1, gpus=opts.gpus, schedulers=3, flower=False,
                               settings=settings)
        cluster.start()
        try:
            client = Client(cluster.settings)
            client.wait(client.map("corral.echo", [{}] * (opts.gpus * 4)), timeout=120)
            time.sleep(1)
            if opts.idle > 0:
                start = sample(cluster)
                time.sleep(opts.idle)
                end = sample(cluster)
                idle = {r: (end[r] - start.get(r, 0.0)) * 100 / opts.idle for r in end}
            before = sample(cluster)
            t0 = time.time()
            client.wait(client.map("corral.echo", [{"i": i} for i in range(opts.tasks)]), timeout=600)
            elapsed = time.time() - t0
            after = sample(cluster)
            leader = (client.status().get("leader") or {}).get("id")
            client.close()
        finally:
            cluster.stop()
    print(f"{opts.tasks} tasks on {opts.gpus} GPUs in {elapsed:.2f} s: {opts.tasks / elapsed:.0f} tasks/s")
    total = 0.0
    for role in sorted(after, key=lambda r: after[r] - before.get(r, 0.0), reverse=True):
        ms = (after[role] - before.get(role, 0.0)) * 1000 / opts.tasks
        total += ms
        print(f"  {role + (' (leader)' if role == leader else ''):<28} {ms:6.2f} ms CPU per task")
    print(f"  {'total':<28} {total:6.2f} ms CPU per task")
    if idle:
        print(f"idle for {opts.idle:.0f} s:")
        for role in sorted(idle, key=idle.__getitem__, reverse=True):
            print(f"  {role + (' (leader)' if role == leader else ''):<28} {idle[role]:6.2f} % of a core")
        print(f"  {'total':<28} {sum(idle.values()):6.2f} % of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
