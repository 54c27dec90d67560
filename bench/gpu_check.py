"""Check real GPU discovery through NVML and a real task on every GPU.

    python bench/gpu_check.py [--state-dir DIR]

Starts a local cluster whose node discovers GPUs through NVML (no --fake-gpus), prints
what NVML reported, runs corral.probe pinned to each GPU in turn and prints the probes.
Exits 1 when no real GPU was found.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from corral.base.etcd import prefix_json
from corral.client import Client
from corral.local import LocalCluster
from corral.workers.gpus import nvml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", default=None)
    opts = parser.parse_args()
    found = nvml()
    print("NVML found:", json.dumps([g.to_dict() for g in found], indent=2))
    if not found:
        return 1
    state = opts.state_dir or tempfile.mkdtemp(prefix="corral-gpu-")
    cluster = LocalCluster(state, nodes=1, gpus=None, schedulers=1, flower=False).start()
    try:
        client = Client(cluster.settings)
        node = prefix_json(client.etcd, client.keys.node())["node-1"]
        print("registration:", json.dumps(node["gpus"], indent=2))
        handles = [client.submit("corral.probe") for _ in range(4 * len(found))]
        records = client.wait(handles, timeout=120)
        seen = {}
        for record in records.values():
            probe = client.result(record)
            seen[probe["gpu"]] = probe
        for gpu in sorted(seen):
            print("probe:", json.dumps(seen[gpu]))
        ok = all(p["simulated"] is False and p["cuda_visible_devices"] == str(g)
                 for g, p in seen.items())
        print("result:", "OK" if ok else "MISMATCH")
        return 0 if ok else 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
