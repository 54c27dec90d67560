"""First-task latency on a pre-warmed worker against a cold one.

    python bench/warm.py [--setup-seconds 2] [--samples 3]

`corral.model` has a setup() that takes --setup-seconds (it stands in for loading weights).
A session that declares the algorithm gets its fixed worker warmed when the plan gives it
the GPU; sessions that do not declare it meet a cold worker and pay setup() on their first
task. Latency is submit to result, as a client sees it. Target: warm <= 10 % of cold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from corral.client import Client
from corral.local import LocalCluster


def latency(client: Client, session: str) -> float:
    t0 = time.time()
    client.submit("corral.model", {"q": 1}, session=session).result(timeout=120)
    return time.time() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--setup-seconds", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    os.environ["CORRAL_MODEL_SETUP_SECONDS"] = str(opts.setup_seconds)
    with tempfile.TemporaryDirectory(prefix="corral-warm-") as tmp:
        cluster = LocalCluster(tmp, nodes=1, gpus=opts.samples + 1, schedulers=1, flower=False)
        cluster.start()
        try:
            client = Client(cluster.settings)
            client.open_session("warm", fixed_workers=1, algorithms=["corral.model"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                plan = client.plan()
                if any(p.get("session") == "warm" and "corral.model" in p.get("warm", [])
                       for p in plan.values()):
                    break
                time.sleep(0.1)
            else:
                print("the warm session's worker never reported warm", file=sys.stderr)
                return 1
            warm = [latency(client, "warm") for _ in range(opts.samples)]
            # Cold: one session per remaining GPU, at once, so each meets a fresh worker.
            t0 = time.time()
            handles = [client.submit("corral.model", {"q": i}, session=f"cold{i}")
                       for i in range(opts.samples)]
            records = client.wait(handles, timeout=120)
            cold = [r["attempts"][-1]["ended"] - t0 for r in records.values()]
            client.close()
        finally:
            cluster.stop()
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"setup() {opts.setup_seconds:.1f} s; first task, submit to result:")
    print(f"  warm worker  p50 {w * 1000:8.1f} ms  ({', '.join(f'{x * 1000:.0f}' for x in warm)})")
    print(f"  cold worker  p50 {c * 1000:8.1f} ms  ({', '.join(f'{x * 1000:.0f}' for x in cold)})")
    print(f"  warm / cold  {w / c:.3f}  (target <= 0.10)")
    if opts.json:
        print(json.dumps({"setup_seconds": opts.setup_seconds, "warm_s": warm, "cold_s": cold,
                          "ratio": w / c}))
    return 0 if w / c <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
