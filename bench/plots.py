"""PNG plots for docs/benchmarks.md from the JSON the benchmark scripts print.

    pip install -e '.[bench]'
    python bench/throughput.py --json | tail -1 > throughput.json
    python bench/failover.py --json | tail -1 > failover.json
    python bench/plots.py --throughput throughput.json --failover failover.json --out docs/img

Writes throughput.png (tasks/s against workers: raw Celery, corral, corral unbatched) and
failover.png (each kill's seconds to routing again, with the median and the targets).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text().strip().splitlines()[-1])


def throughput_plot(data: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt

    rows = sorted(data["rows"], key=lambda r: r["workers"])
    workers = [r["workers"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key, label, style in (("raw", "raw Celery", "o--"), ("corral", "corral (batching on)", "s-"),
                              ("unbatched", "corral, CORRAL_BATCH_MAX=1", "^:")):
        if all(key in r for r in rows):
            ax.plot(workers, [r[key]["tasks_per_s"] for r in rows], style, label=label)
    ax.set_xlabel("GPU workers (simulated, -c 1 each)")
    ax.set_ylabel("trivial tasks per second")
    ax.set_xticks(workers)
    ax.set_ylim(bottom=0)
    ax.set_title(f"Throughput, {data['tasks']} tasks, 2 cores")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / "throughput.png"
    fig.tight_layout()
    fig.savefig(path)
    return path


def failover_plot(data: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt

    gaps = data["gaps"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.bar(range(1, len(gaps) + 1), gaps, color="tab:blue", label="kill -> routing again")
    ax.axhline(statistics.median(gaps), color="tab:green", label=f"median {statistics.median(gaps):.2f} s")
    ax.axhline(2.5, color="tab:orange", linestyle="--", label="median target 2.5 s")
    ax.axhline(3.5, color="tab:red", linestyle=":", label="max target 3.5 s")
    ax.set_xlabel("leader kill")
    ax.set_ylabel("seconds")
    ax.set_xticks(range(1, len(gaps) + 1))
    ax.set_title("Leader failover (SIGKILL while tasks flow)")
    ax.legend(loc="lower right")
    path = out / "failover.png"
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--throughput", help="JSON line from bench/throughput.py --json")
    parser.add_argument("--failover", help="JSON line from bench/failover.py --json")
    parser.add_argument("--out", default="docs/img")
    opts = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("matplotlib is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.throughput:
        print(throughput_plot(load(opts.throughput), out))
    if opts.failover:
        print(failover_plot(load(opts.failover), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
