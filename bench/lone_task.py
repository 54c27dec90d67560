"""Submit-to-start latency of lone tasks, by how they are submitted and awaited.

    python bench/lone_task.py [--tasks 300] [--workers 4]

With a raw Celery cluster and a local corral cluster both up (bench/throughput.py's), each
round runs, in a shuffled order, one task of each kind, one at a time:
  raw           raw Celery, `send_task(...).get()`;
  fresh         corral, an id the client makes up (the leader skips the history lookup),
                awaited with `Handle.result()`;
  named         corral, an id given by the caller (a possible idempotency key: the leader
                asks the history store about it), `Handle.result()`;
  fresh, quiet  corral, a fresh id, the client idle for 30 ms before it waits (what the
                cluster alone costs, without the client's reads on the same cores).
Prints each kind's p50 and p90 and its p50 over raw's.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from throughput import corral_cluster, corral_latency, pct, raw_cluster, raw_latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    opts = parser.parse_args()
    kinds = ["raw", "fresh", "named", "fresh, quiet"]
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        state = Path(tmp)
        with raw_cluster(opts.workers, state) as raw, corral_cluster(opts.workers, state) as client:
            for i in range(opts.tasks):
                for kind in random.sample(kinds, len(kinds)):
                    lat[kind].append(raw_latency(raw, i) if kind == "raw" else
                                     corral_latency(client, i, kind != "named", kind.endswith("quiet")))
    base = pct(lat["raw"], 0.5)
    print(f"{'kind':<13} {'p50 ms':>7} {'p90 ms':>7} {'p50 - raw':>10}")
    for kind in kinds:
        p50, p90 = pct(lat[kind], 0.5), pct(lat[kind], 0.9)
        print(f"{kind:<13} {p50 * 1000:>7.2f} {p90 * 1000:>7.2f} {(p50 - base) * 1000:>+10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
