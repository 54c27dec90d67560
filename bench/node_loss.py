"""Node loss: time from SIGKILL of a node's process group to the first re-routed start.

    python bench/node_loss.py [--kills 3]

Two nodes with 2 simulated GPUs each run 0.5 s tasks; node-2 is killed, its attempts are
re-routed to node-1; then node-2 is restarted and re-admitted after the stabilization
window before the next kill. Target: at most the node lease TTL + 1 s.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time

from corral.base.etcd import get_json
from corral.client import Client
from corral.local import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--kills", type=int, default=3)
    opts = parser.parse_args()
    delays = []
    with tempfile.TemporaryDirectory(prefix="corral-nodeloss-") as tmp:
        cluster = LocalCluster(tmp, nodes=2, gpus=2, schedulers=1, flower=False).start()
        try:
            client = Client(cluster.settings)
            ttl = cluster.settings.node_ttl
            for _ in range(opts.kills):
                handles = client.map("corral.sleep", [{"seconds": 0.5}] * 60)
                time.sleep(3)
                killed = time.time()
                cluster.kill("node-2", signal.SIGKILL)
                records = client.wait(handles, timeout=120)
                starts = [after["started"] for r in records.values()
                          for before, after in zip(r["attempts"], r["attempts"][1:], strict=False)
                          if before["state"] == "SUPERSEDED" and after["started"]]
                delays.append(min(starts) - killed)
                print(f"  kill -> first re-routed start {delays[-1]:.2f} s ({len(starts)} re-routed)")
                cluster.restart("node-2")
                while (get_json(client.etcd, client.keys.node_health("node-2")) or {}).get("state") != "up":
                    time.sleep(0.2)
            client.close()
        finally:
            cluster.stop()
    print(f"node loss, lease TTL {ttl:.0f} s: median {statistics.median(delays):.2f} s, "
          f"max {max(delays):.2f} s (target <= {ttl + 1:.0f} s)")
    return 0 if max(delays) <= ttl + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
