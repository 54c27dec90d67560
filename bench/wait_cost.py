"""What waiting for one task costs as the cluster's finished tasks pile up.

    python bench/wait_cost.py [--finished 20000] [--samples 50]

A local cluster (3 schedulers, 1 node with 4 simulated GPUs). `Client.wait` on one new
`corral.echo` task (submitted, then waited for: the time from the submit to the record's
SUCCEEDED, as a user sees it), --samples times on the empty cluster, then again after
--finished other tasks have run (their records moved to the history store), and --settle
seconds have passed. Prints both medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from corral.client import Client
from corral.local import LocalCluster


def one_wait(client: Client) -> float:
    started = time.perf_counter()
    h = client.submit("corral.echo", {"t": started})
    client.wait([h], timeout=60)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--finished", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--settle", type=float, default=30.0,
                        help="seconds to let the cluster settle after the finished tasks ran")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-wait-") as tmp:
        cluster = LocalCluster(tmp, nodes=1, gpus=4, schedulers=3, flower=False).start()
        try:
            client = Client(cluster.settings)
            for _ in range(5):
                one_wait(client)  # warm
            empty = [one_wait(client) for _ in range(opts.samples)]
            handles = client.map("corral.echo", [{"i": i} for i in range(opts.finished)])
            client.wait(handles, timeout=3600)
            time.sleep(opts.settle)  # followers' mirrors, retiring and compaction catch up
            full = [one_wait(client) for _ in range(opts.samples)]
            client.close()
        finally:
            cluster.stop()
    e, f = statistics.median(empty) * 1000, statistics.median(full) * 1000
    print(f"wait for one task: {e:.1f} ms on an empty cluster, {f:.1f} ms with {opts.finished} finished "
          f"tasks in history: ratio {f / e:.2f} (target <= 1.5)")
    if opts.json:
        print(json.dumps({"empty_ms": e, "full_ms": f, "finished": opts.finished, "ratio": f / e,
                          "settle_s": opts.settle}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
