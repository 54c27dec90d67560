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
Prints each kind's p50 and p90 and its p50 over raw's, then where a fresh task's time
goes, from the times corral records anyway (each stage's p50, so they need not add up):
  to the leader     submit -> the leader's intake (`submitted`): a Redis hop, its reader
  decided           intake -> the placement decision (the attempt's `dispatched`)
  to the worker     decision -> the worker holds the message (the attempt's `started`):
                    the etcd commit, the publish, the worker's receipt and hand-over
  claimed           -> the body runs (`corral.probe`'s `ran_at`): the worker's fence claim
Every time is from this host's clock. Raw Celery's whole path is the `raw` row.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from throughput import corral_cluster, corral_latency, corral_probe, pct, raw_cluster, raw_latency

from corral.client import Client

STAGES = ["to the leader", "decided", "to the worker", "claimed"]


def stages(client: Client, i: int) -> tuple[float, list[float]]:
    """A fresh task's submit-to-start, and its stages (STAGES) from its record."""
    sent, ran, task_id = corral_probe(client, i)
    record = client.task(task_id) or {}
    attempt = record["attempts"][-1]
    marks = [sent, record["submitted"], attempt["dispatched"], attempt["started"], ran]
    return ran - sent, [b - a for a, b in zip(marks, marks[1:], strict=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    opts = parser.parse_args()
    kinds = ["raw", "fresh", "named", "fresh, quiet"]
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    parts: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        state = Path(tmp)
        with raw_cluster(opts.workers, state) as raw, corral_cluster(opts.workers, state) as client:
            for i in range(opts.tasks):
                for kind in random.sample(kinds, len(kinds)):
                    if kind == "fresh":
                        total, split = stages(client, i)
                        lat[kind].append(total)
                        parts.append(split)
                    else:
                        lat[kind].append(raw_latency(raw, i) if kind == "raw" else
                                         corral_latency(client, i, kind != "named", kind.endswith("quiet")))
    base = pct(lat["raw"], 0.5)
    print(f"{'kind':<13} {'p50 ms':>7} {'p90 ms':>7} {'p50 - raw':>10}")
    for kind in kinds:
        p50, p90 = pct(lat[kind], 0.5), pct(lat[kind], 0.9)
        print(f"{kind:<13} {p50 * 1000:>7.2f} {p90 * 1000:>7.2f} {(p50 - base) * 1000:>+10.2f}")
    print(f"\n{'fresh, stage':<15} {'p50 ms':>7} {'p90 ms':>7}")
    for n, stage in enumerate(STAGES):
        times = [split[n] for split in parts]
        print(f"{stage:<15} {pct(times, 0.5) * 1000:>7.2f} {pct(times, 0.9) * 1000:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
