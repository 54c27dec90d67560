"""Throughput and submit-to-start latency: corral against raw Celery on the same workers.

    python bench/throughput.py [--tasks 2000] [--latency-tasks 200] [--workers 4 8] [--json]

For each worker count W it measures, in one run, on one machine:
  raw       W Celery workers (-c 1, prefork, acks_late, prefetch 1) on one queue, tasks
            sent with send_task and collected from the Redis result backend;
  corral    a local cluster (3 schedulers, 1 node with W simulated GPUs), tasks submitted
            with Client.map and collected from their records; adaptive batching (M11) on,
            as by default;
  unbatched the same cluster with CORRAL_BATCH_MAX=1: one task per GPU message.
Throughput: N trivial tasks, first submit to last completion, each system measured alone
(raw first; its idle workers stay up while corral runs). Latency: tasks submitted one at
a time, raw and corral in turn with both up; submit-to-start is the worker's start time
minus the client's send time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery

from corral.base.config import Settings
from corral.base.process import free_port, stop_groups
from corral.client import Client
from corral.local import LocalCluster, require_binary

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@contextmanager
def raw_cluster(workers: int, state: Path) -> Iterator[Celery]:
    """W raw Celery workers on one queue of a Redis of their own, warmed up."""
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    procs = [subprocess.Popen([require_binary("redis-server", "redis-server"), "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(state)], stdout=subprocess.DEVNULL,
                              start_new_session=True)]
    env = {**os.environ, "RAW_BROKER": broker, "PYTHONPATH": str(ROOT / "bench")}
    time.sleep(0.5)
    for i in range(workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "raw_app", "worker", "-Q", "raw", "-c", "1",
             "-P", "prefork", "--hostname", f"raw{i}@bench", "--prefetch-multiplier", "1",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    sys.path.insert(0, str(ROOT / "bench"))
    os.environ["RAW_BROKER"] = broker
    import importlib

    import raw_app

    raw = importlib.reload(raw_app).app
    try:
        for r in [raw.send_task("raw.echo", args=[{}], queue="raw") for _ in range(workers * 4)]:
            r.get(timeout=120)
        time.sleep(1)
        yield raw
    finally:
        stop_groups([p.pid for p in procs], grace=5)


def raw_throughput(raw: Celery, tasks: int) -> float:
    t0 = time.time()
    results = [raw.send_task("raw.echo", args=[{"i": i}], queue="raw") for i in range(tasks)]
    for r in results:
        r.get(timeout=600)
    return tasks / (time.time() - t0)


def raw_latency(raw: Celery, i: int) -> float:
    sent = time.time()
    return float(raw.send_task("raw.echo", args=[{"i": i}], queue="raw").get(timeout=60)["started"]) - sent


@contextmanager
def corral_cluster(workers: int, state: Path, batch_max: int | None = None) -> Iterator[Client]:
    """A local cluster (3 schedulers, 1 node with W simulated GPUs), warmed up."""
    settings = Settings(cluster="local").with_(batch_max=batch_max)
    cluster = LocalCluster(state / f"corral-{batch_max}", nodes=1, gpus=workers, schedulers=3,
                           flower=False, settings=settings)
    cluster.start()
    try:
        client = Client(cluster.settings)
        client.wait(client.map("corral.echo", [{}] * (workers * 4)), timeout=120)
        time.sleep(1)
        yield client
        client.close()
    finally:
        cluster.stop()


def corral_throughput(client: Client, tasks: int) -> float:
    t0 = time.time()
    client.wait(client.map("corral.echo", [{"i": i} for i in range(tasks)]), timeout=600)
    return tasks / (time.time() - t0)


def corral_probe(client: Client, i: int, fresh: bool = True, quiet: bool = False) -> tuple[float, float, str]:
    """One task, submitted then awaited: (when it was sent, when its body began, its id).
    The body's start is what `corral.probe` reports (`ran_at`), as raw's echo reports its
    own (the attempt's `started` is taken before the worker's claim); `fresh`: an id the
    client makes up (else one of the caller's), `quiet`: the client idle for 30 ms before
    it waits for the result."""
    sent = time.time()
    h = client.submit("corral.probe", {"i": i}, task_id=None if fresh else uuid.uuid4().hex)
    if quiet:
        time.sleep(0.03)
    return sent, float(h.result(timeout=60)["ran_at"]), h.id


def corral_latency(client: Client, i: int, fresh: bool = True, quiet: bool = False) -> float:
    """Submit-to-start of one task (corral_probe)."""
    sent, ran, _ = corral_probe(client, i, fresh, quiet)
    return ran - sent


def figures(tasks_per_s: float, lat: list[float]) -> dict[str, float]:
    return {"tasks_per_s": tasks_per_s, "p50_ms": pct(lat, 0.5) * 1000, "p99_ms": pct(lat, 0.99) * 1000}


def measure(workers: int, tasks: int, latency_tasks: int, state: Path) -> dict[str, Any]:
    """Throughput of each system alone (the other idle or not started); latency with both
    up, one task of each in turn, so that both see the same machine at the same moments
    (this VM's speed drifts within a run as much as the difference being measured)."""
    with raw_cluster(workers, state) as raw:
        raw_tp = raw_throughput(raw, tasks)
        with corral_cluster(workers, state) as client:
            cor_tp = corral_throughput(client, tasks)
            raw_lat, cor_lat = [], []
            for i in range(latency_tasks):
                raw_lat.append(raw_latency(raw, i))
                cor_lat.append(corral_latency(client, i))
    with corral_cluster(workers, state, batch_max=1) as client:
        one_tp = corral_throughput(client, tasks)
        one_lat = [corral_latency(client, i) for i in range(latency_tasks)]
    return {"raw": figures(raw_tp, raw_lat), "corral": figures(cor_tp, cor_lat),
            "unbatched": figures(one_tp, one_lat)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    opts = parser.parse_args()
    rows = []
    for w in opts.workers:
        with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
            m = measure(w, opts.tasks, opts.latency_tasks, Path(tmp))
        raw, cor, one = m["raw"], m["corral"], m["unbatched"]
        rows.append({"workers": w, "raw": raw, "corral": cor, "unbatched": one,
                     "throughput_ratio": cor["tasks_per_s"] / raw["tasks_per_s"],
                     "p50_extra_ms": cor["p50_ms"] - raw["p50_ms"],
                     "unbatched_ratio": one["tasks_per_s"] / raw["tasks_per_s"]})
    print(f"{'workers':>7} | {'raw tasks/s':>11} {'p50 ms':>7} {'p99 ms':>7} | "
          f"{'corral tasks/s':>14} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>5} {'p50 +ms':>7} | "
          f"{'unbatched tasks/s':>17} {'ratio':>5}")
    for r in rows:
        raw, cor, one = r["raw"], r["corral"], r["unbatched"]
        print(f"{r['workers']:>7} | {raw['tasks_per_s']:>11.0f} {raw['p50_ms']:>7.2f} "
              f"{raw['p99_ms']:>7.2f} | {cor['tasks_per_s']:>14.0f} {cor['p50_ms']:>7.2f} "
              f"{cor['p99_ms']:>7.2f} | {r['throughput_ratio']:>5.2f} {r['p50_extra_ms']:>7.2f} | "
              f"{one['tasks_per_s']:>17.0f} {r['unbatched_ratio']:>5.2f}")
    if opts.json:
        print(json.dumps({"tasks": opts.tasks, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
