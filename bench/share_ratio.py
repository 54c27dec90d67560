"""Share-ratio convergence: how fast two backlogged sessions reach their ratio.

    python bench/share_ratio.py [--runs 3]

8 simulated GPUs; sessions A (fixed 1, ratio 1) and B (fixed 1, ratio 3) each submit a
long backlog at once; convergence is the time from the first submit until the plan in
etcd gives A=2 and B=6. Target (sessions issue): within 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter

from corral.client import Client
from corral.local import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    times = []
    with tempfile.TemporaryDirectory(prefix="corral-share-") as tmp:
        cluster = LocalCluster(tmp, nodes=2, gpus=4, schedulers=1, flower=False).start()
        try:
            client = Client(cluster.settings)
            for run in range(opts.runs):
                a = client.open_session(f"A{run}", fixed_workers=1, share_ratio=1)
                b = client.open_session(f"B{run}", fixed_workers=1, share_ratio=3)
                t0 = time.time()
                handles = (a.map("corral.sleep", [{"seconds": 0.2}] * 80)
                           + b.map("corral.sleep", [{"seconds": 0.2}] * 240))
                while True:
                    plan = Counter(p["session"] for p in client.plan().values() if p.get("session"))
                    if plan[f"A{run}"] == 2 and plan[f"B{run}"] == 6:
                        break
                    time.sleep(0.02)
                times.append(time.time() - t0)
                print(f"  run {run}: A=2, B=6 after {times[-1]:.2f} s")
                client.wait(handles, timeout=120)
                client.close_session(f"A{run}")
                client.close_session(f"B{run}")
                time.sleep(3)
            client.close()
        finally:
            cluster.stop()
    print(f"share-ratio convergence: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
          "(target <= 5 s)")
    return 0 if max(times) <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
