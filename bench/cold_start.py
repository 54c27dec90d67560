"""A cluster is ready when `corral up` says so: 200 tasks right after it, against the same
200 on a cluster that has been up for 15 s.

    python bench/cold_start.py [--tasks 200] [--runs 3] [--json]

Each run: `corral up --detach` (etcd, Redis, 3 schedulers, 1 node with 4 simulated GPUs,
Flower) in a new state folder; the moment it returns, `Client.map` of --tasks `corral.echo`
tasks and `Client.wait` for them (cold); then, 15 s after `up` returned, the same again
(warm); then `corral down`. Prints each run's times and the ratio cold / warm (the target
is at most 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corral.base.config import Settings
from corral.client import Client


def corral(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    subprocess.run([sys.executable, "-m", "corral.cli", *args], check=True, env=env,
                   cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL)


def batch(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    client.wait(client.map("corral.echo", [{"i": i} for i in range(n)]), timeout=300)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    runs = []
    for _ in range(opts.runs):
        with tempfile.TemporaryDirectory(prefix="corral-cold-") as tmp:
            started = time.perf_counter()
            corral("up", "--detach", "--gpus", "4", "--state-dir", tmp)
            up_s = time.perf_counter() - started
            ready_at = time.perf_counter()
            info = json.loads((Path(tmp) / "cluster.json").read_text())
            client = Client(Settings(etcd=info["etcd"], broker=info["broker"], cluster=info["cluster"]))
            try:
                cold = batch(client, opts.tasks)
                time.sleep(max(0.0, 15.0 - (time.perf_counter() - ready_at)))
                warm = batch(client, opts.tasks)
            finally:
                client.close()
                corral("down", "--state-dir", tmp)
        runs.append({"up_s": up_s, "cold_s": cold, "warm_s": warm, "ratio": cold / warm})
        print(f"corral up took {up_s:.1f} s; {opts.tasks} tasks right after: {cold:.2f} s; "
              f"15 s later: {warm:.2f} s; ratio {cold / warm:.2f} (target <= 2)")
    ratio = statistics.median(r["ratio"] for r in runs)
    print(f"median ratio over {len(runs)} runs: {ratio:.2f}")
    if opts.json:
        print(json.dumps({"tasks": opts.tasks, "runs": runs, "median_ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
