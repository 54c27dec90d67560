"""Local retry latency: from a failed attempt's end to its local retry's start (M1).

    python bench/retry_latency.py [--tasks 200] [--gpus 4]

A local cluster (3 schedulers, 1 node with --gpus simulated GPUs) runs --tasks
`corral.fail` tasks with `retry=Retry(local=1, hosts=1)`, one at a time (so that
nothing else waits on the GPU), each failing twice on its GPU. The gap is the retry's
`started` minus the first attempt's `ended`, both stamped by the worker on the same
clock. The leader decides every retry: the gap is the failure report, the leader's
decision and fenced write, the publish and the worker's pick-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile

from corral.client import Client, Retry, TaskFailed
from corral.local import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    gaps = []
    with tempfile.TemporaryDirectory(prefix="corral-retry-") as tmp:
        cluster = LocalCluster(tmp, nodes=1, gpus=opts.gpus, schedulers=3, flower=False).start()
        try:
            client = Client(cluster.settings)
            for i in range(opts.tasks):
                h = client.submit("corral.fail", {"message": f"no {i}"}, retry=Retry(local=1, hosts=1))
                try:
                    h.result(timeout=60)
                except TaskFailed as failed:
                    first, second = failed.record["attempts"]
                    gaps.append(second["started"] - first["ended"])
            client.close()
        finally:
            cluster.stop()
    ms = sorted(g * 1000 for g in gaps)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{len(ms)} local retries: failed attempt's end -> retry's start p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, max {ms[-1]:.2f} ms")
    if opts.json:
        print(json.dumps({"retries": len(ms), "p50_ms": p50, "p99_ms": p99, "max_ms": ms[-1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
