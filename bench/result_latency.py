"""How long after a task ends its result reaches `Handle.result()`.

    python bench/result_latency.py [--seconds 0.1 0.5 2.0] [--tasks 5]

On a local cluster (3 schedulers, 1 node, 4 simulated GPUs), `corral.sleep` tasks one at a
time; for each, the time from the attempt's end (the worker's clock) to the return of
`Handle.result()`, against a client that polls the record with a backoff from 10 ms to
250 ms (how `Handle.result()` waited before it watched). Medians of `--tasks` per row.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from throughput import corral_cluster, pct


def poll(handle: Any) -> None:
    delay = 0.01
    while (record := handle.record()) is None or record.get("state") != "SUCCEEDED":
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.1, 0.5, 2.0])
    parser.add_argument("--tasks", type=int, default=5)
    opts = parser.parse_args()
    print(f"{'task s':>6} | {'result() ms after the end':>25} | {'polling ms after the end':>24}")
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp, \
            corral_cluster(4, Path(tmp)) as client:
        for seconds in opts.seconds:
            lags: dict[str, list[float]] = {"result": [], "poll": []}
            for _ in range(opts.tasks):
                for how, lag in lags.items():
                    handle = client.submit("corral.sleep", {"seconds": seconds})
                    handle.result(timeout=120) if how == "result" else poll(handle)
                    got = time.time()
                    lag.append(got - float(client.task(handle.id)["attempts"][-1]["ended"]))
            print(f"{seconds:>6} | {pct(lags['result'], 0.5) * 1000:>25.1f} | "
                  f"{pct(lags['poll'], 0.5) * 1000:>24.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
