"""corral against its peers on the same machine: Ray and raw Celery, small and short tasks.

    pip install -e '.[bench]'        # Ray
    python bench/peers.py [--workers 4 8] [--echo 2000] [--short 1000] [--rounds 1] [--json]

For each worker count W, in one run, the three systems take turns on each workload (the
order rotates every round, so that none always runs first on a cold or a hot machine):

  corral  a local cluster (3 schedulers, 1 node with W simulated GPUs), adaptive batching on
          (the default); submitted with `Client.map`, collected with `client.results()`;
  ray     `ray.init(num_cpus=W)`, one `@ray.remote` function, collected with `ray.get(refs)`;
  raw     W Celery workers (prefork, -c 1, acks late, prefetch 1, JSON) on one Redis queue,
          results from the Redis backend.

Workloads: --echo trivial tasks (return their args), and --short tasks that sleep 10 ms,
the size of a small model's forward pass. Prints tasks per second, corral's ratio to each
peer, and, for the 10 ms tasks, each system's share of the physical limit (W workers / 10 ms).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from throughput import corral_cluster, raw_cluster

SLEEP = 0.01


def run_corral(client: Any, workload: str, n: int) -> float:
    algorithm, args = ("corral.echo", [{"i": i} for i in range(n)]) if workload == "echo" else \
        ("corral.sleep", [{"seconds": SLEEP}] * n)
    t0 = time.perf_counter()
    client.results(client.map(algorithm, args), timeout=600)
    return n / (time.perf_counter() - t0)


def run_raw(raw: Any, workload: str, n: int) -> float:
    name, args = ("raw.echo", [{"i": i} for i in range(n)]) if workload == "echo" else \
        ("raw.sleep", [SLEEP] * n)
    t0 = time.perf_counter()
    results = [raw.send_task(name, args=[a], queue="raw") for a in args]
    for r in results:
        r.get(timeout=600)
    return n / (time.perf_counter() - t0)


def ray_system(workers: int) -> tuple[Callable[[str, int], float], Callable[[], None]]:
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    @ray.remote
    def echo(args: dict[str, Any]) -> dict[str, Any]:
        return args

    @ray.remote
    def sleep(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    ray.get([echo.remote({}) for _ in range(workers * 4)])  # workers started, as the others are

    def run(workload: str, n: int) -> float:
        t0 = time.perf_counter()
        if workload == "echo":
            ray.get([echo.remote({"i": i}) for i in range(n)])
        else:
            ray.get([sleep.remote(SLEEP) for _ in range(n)])
        return n / (time.perf_counter() - t0)

    return run, ray.shutdown


Rates = dict[str, dict[str, list[float]]]  # workload -> system -> tasks/s, one per round


def measure(workers: int, sizes: dict[str, int], rounds: int, state: Path) -> Rates:
    out: Rates = {w: {"corral": [], "ray": [], "raw": []} for w in sizes}
    ray_run, ray_stop = ray_system(workers)
    try:
        with raw_cluster(workers, state) as raw, corral_cluster(workers, state) as client:
            systems = {"corral": lambda w, n: run_corral(client, w, n),
                       "ray": ray_run, "raw": lambda w, n: run_raw(raw, w, n)}
            order = list(systems)
            for r in range(rounds):
                for workload, n in sizes.items():
                    for name in order[r % 3:] + order[:r % 3]:
                        out[workload][name].append(systems[name](workload, n))
                        time.sleep(0.5)
    finally:
        ray_stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--echo", type=int, default=2000)
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    rows = []
    for w in opts.workers:
        with tempfile.TemporaryDirectory(prefix="corral-peers-") as tmp:
            got = measure(w, {"echo": opts.echo, "short": opts.short}, opts.rounds, Path(tmp))
        for workload, by in got.items():
            best = {name: max(v) for name, v in by.items()}
            limit = w / SLEEP if workload == "short" else None
            rows.append({"workers": w, "workload": workload, **{f"{k}_per_s": v for k, v in best.items()},
                         "corral_over_ray": best["corral"] / best["ray"],
                         "corral_over_raw": best["corral"] / best["raw"],
                         **({f"{k}_of_limit": v / limit for k, v in best.items()} if limit else {})})
    print(f"{'W':>2} {'tasks':<17} | {'corral/s':>8} {'ray/s':>8} {'raw/s':>8} | {'c/ray':>5} {'c/raw':>5} | "
          "share of the limit (corral, ray, raw)")
    for r in rows:
        label = f"{opts.echo} echo" if r["workload"] == "echo" else f"{opts.short} x 10 ms"
        shares = (f"{r['corral_of_limit']:.0%}, {r['ray_of_limit']:.0%}, {r['raw_of_limit']:.0%}"
                  if "corral_of_limit" in r else "-")
        print(f"{r['workers']:>2} {label:<17} | {r['corral_per_s']:>8.0f} {r['ray_per_s']:>8.0f} "
              f"{r['raw_per_s']:>8.0f} | {r['corral_over_ray']:>5.2f} {r['corral_over_raw']:>5.2f} | "
              f"{shares}")
    if opts.json:
        print(json.dumps({"rounds": opts.rounds, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
