"""Raw Celery against corral without batching, alternating, with the CPU each spends per task.

    python bench/unbatched.py [--tasks 2000] [--rounds 3] [--workers 4] [--linger SECONDS] [--json]

Both up at once on one machine: W raw Celery workers (bench/throughput.py's, prefork, -c 1,
acks late, prefetch 1) and a local cluster (3 schedulers, 1 node with W simulated GPUs)
with `CORRAL_BATCH_MAX=1`, one task per GPU message. Each round sends N trivial tasks to
raw Celery (`send_task`, results from the Redis backend), then N to corral (`Client.map`,
`Client.wait`), each while the other idles, and prints both rates, their ratio, and each
one's CPU milliseconds per task by process (from /proc): the per-task cost that issue 16's
second criterion compares, in several rounds because this VM's speed drifts within a run.
`--linger` sets `CORRAL_COMMIT_LINGER` (0 turns group commit off).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from cpu_split import cpu_seconds, sample, tree
from throughput import raw_cluster, raw_throughput

from corral.base.config import Settings
from corral.client import Client
from corral.local import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--linger", type=float, default=None, help="CORRAL_COMMIT_LINGER (0: off)")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    opts = parser.parse_args()
    n, rows = opts.tasks, []
    me = os.getpid()
    with tempfile.TemporaryDirectory(prefix="corral-unbatched-") as tmp, \
            raw_cluster(opts.workers, Path(tmp)) as raw:
        raw_pids = [p for p in tree(me) if p != me]
        settings = Settings(cluster="local").with_(batch_max=1, commit_linger=opts.linger)
        cluster = LocalCluster(Path(tmp) / "corral", nodes=1, gpus=opts.workers, schedulers=3,
                               flower=False, settings=settings)
        cluster.start()
        try:
            client = Client(cluster.settings)
            client.wait(client.map("corral.echo", [{}] * (opts.workers * 4)), timeout=120)
            time.sleep(1)
            for r in range(opts.rounds):
                before, mine = sum(map(cpu_seconds, raw_pids)), cpu_seconds(me)
                raw_rate = raw_throughput(raw, n)
                raw_ms = {"workers and Redis": (sum(map(cpu_seconds, raw_pids)) - before) * 1000 / n,
                          "client": (cpu_seconds(me) - mine) * 1000 / n}
                start, t0 = sample(cluster), time.time()
                records = client.wait(client.map("corral.echo", [{"i": i} for i in range(n)]), timeout=600)
                corral_rate, end = n / (time.time() - t0), sample(cluster)
                assert all(rec["state"] == "SUCCEEDED" for rec in records.values())
                corral_ms = {role: (end[role] - start.get(role, 0.0)) * 1000 / n for role in end}
                rows.append({"round": r + 1, "raw_per_s": raw_rate, "corral_per_s": corral_rate,
                             "ratio": corral_rate / raw_rate, "raw_ms": raw_ms, "corral_ms": corral_ms})
                print(f"round {r + 1}: raw {raw_rate:5.0f}/s ({sum(raw_ms.values()):.2f} ms CPU/task), "
                      f"corral unbatched {corral_rate:5.0f}/s ({sum(corral_ms.values()):.2f} ms CPU/task): "
                      f"ratio {corral_rate / raw_rate:.2f}", flush=True)
                split = ", ".join(f"{k} {v:.2f}" for k, v in sorted(corral_ms.items()))
                print(f"    corral: {split}", flush=True)
            client.close()
        finally:
            cluster.stop()
    ratios = sorted(row["ratio"] for row in rows)
    print(f"ratio over {len(rows)} rounds: median {ratios[len(ratios) // 2]:.2f}, "
          f"min {ratios[0]:.2f}, max {ratios[-1]:.2f}")
    if opts.json:
        print(json.dumps({"tasks": n, "workers": opts.workers, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
