"""etcd stays small however many tasks run: 200,000 tasks against a 64 MiB quota.

    python bench/etcd_bound.py [--tasks 200000] [--quota-mib 64] [--window 5000] [--json]

A local cluster (3 schedulers, 1 node with 4 simulated GPUs) whose etcd has a space quota
of --quota-mib (CORRAL_ETCD_QUOTA says the same to the schedulers; admission refuses new
work past half of it). A producer submits `corral.echo` tasks with `Client.map`, keeping at
most two windows of --window tasks unfinished, as a producer that waits for its results
does; a submission refused by backpressure (`Backpressure` before sending, or a REJECTED
record) is sent again under a new id. A sampler reads etcd's database size every 0.5 s.

At the end it checks that every logical task SUCCEEDED exactly once (one SUCCEEDED record
among its ids, with one succeeded attempt), reads every record back from the history store,
and runs `corral task` on the first task. Prints the largest etcd database seen against
the quota, the throughput, the refusals, and what the history store holds in Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import redis

from corral.base.config import Settings
from corral.base.etcd import connect, snapshot
from corral.base.keys import Keys
from corral.base.retry import RetryPolicy
from corral.client import Backpressure, Client, Handle
from corral.local import LocalCluster

RETRY = RetryPolicy().to_dict()


class Sampler(threading.Thread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.etcd = connect(settings)
        self.most = 0
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(0.5):
            try:
                size = int(self.etcd.status().db_size)
            except Exception:
                continue
            self.most = max(self.most, size)
            self.samples.append((time.monotonic() - start, size))


def submit(client: Client, ids: list[tuple[int, str]]) -> list[Handle]:
    """Submit these (logical index, id) pairs; wait out backpressure before sending."""
    while True:
        try:
            return client.send([{"algorithm": "corral.echo", "args": {"i": i}, "task_id": tid,
                                 "session": "default", "gpus": 1, "retry": RETRY} for i, tid in ids])
        except Backpressure as exc:
            print(f"  backpressure: {exc}", file=sys.stderr)
            time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--quota-mib", type=int, default=64)
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--state-dir", help="keep the cluster's logs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    quota = opts.quota_mib * 1024 * 1024
    settings = Settings(cluster="local", etcd_quota=quota)
    with tempfile.TemporaryDirectory(prefix="corral-etcd-bound-") as tmp:
        cluster = LocalCluster(opts.state_dir or tmp, nodes=1, gpus=4, schedulers=3, flower=False,
                               settings=settings).start()
        try:
            client = Client(cluster.settings)
            sampler = Sampler(cluster.settings)
            sampler.start()
            started = time.perf_counter()
            outcome: dict[int, list[dict[str, Any]]] = {}
            refused = resent = 0
            todo = [(i, f"b{i}") for i in range(opts.tasks)]
            flight: list[list[Handle]] = []
            index: dict[str, int] = {}
            last_print = 0.0
            while todo or flight:
                if todo and len(flight) < 2:
                    part, todo = todo[:opts.window], todo[opts.window:]
                    index.update({tid: i for i, tid in part})
                    flight.append(submit(client, part))
                    continue
                batch = flight.pop(0)
                records = client.wait(batch, timeout=3600)
                again = []
                for tid, record in records.items():
                    if record["state"] == "REJECTED" and "refused" in (record.get("reason") or ""):
                        refused += 1
                        i = index[tid]
                        again.append((i, f"b{i}.r{refused}"))
                    else:
                        outcome.setdefault(index[tid], []).append(record)
                resent += len(again)
                todo = again + todo
                if time.monotonic() - last_print > 10:
                    last_print = time.monotonic()
                    size = sampler.samples[-1][1] / 2**20 if sampler.samples else 0.0
                    print(f"  {len(outcome):,} of {opts.tasks:,} done; etcd {size:.1f} MiB", file=sys.stderr)
            elapsed = time.perf_counter() - started
            time.sleep(5)  # the last records move to history
            sampler.stop.set()
            sampler.join()
            # Every logical task: exactly one SUCCEEDED record, with one succeeded attempt;
            # every record read back from the history store.
            states = Counter()
            wrong = []
            for i in range(opts.tasks):
                recs = outcome.get(i, [])
                wins = [r for r in recs if r["state"] == "SUCCEEDED"]
                states["SUCCEEDED" if len(wins) == 1 else "WRONG"] += 1
                if len(wins) != 1 or [a["state"] for a in wins[0]["attempts"]].count("SUCCEEDED") != 1:
                    wrong.append(i)
            ids = [r["id"] for recs in outcome.values() for r in recs]
            history = client.finished(ids)
            missing = sum(1 for r in history if r is None)
            etcd = connect(cluster.settings)
            keys = Keys(cluster.settings.cluster)
            live_left = len(snapshot(etcd, keys.task())[0])
            chunks = snapshot(etcd, keys.done())[0]
            final_db = int(etcd.status().db_size)
            first = subprocess.run([sys.executable, "-m", "corral.cli", "task", "b0"], capture_output=True,
                                   text=True, timeout=60, cwd=tempfile.gettempdir(),
                                   env={**os.environ, **cluster.settings.to_env()})
            r = redis.Redis.from_url(cluster.settings.broker)
            pattern = f"corral:{cluster.settings.cluster}:history:*"
            history_keys = sum(1 for _ in r.scan_iter(pattern, count=5000))
            redis_mem = int(r.info("memory")["used_memory"])
            client.close()
        finally:
            cluster.stop()
    figures = {
        "tasks": opts.tasks, "quota_bytes": quota, "etcd_max_bytes": sampler.most,
        "etcd_max_share_of_quota": sampler.most / quota, "etcd_final_bytes": final_db,
        "seconds": elapsed, "tasks_per_second": opts.tasks / elapsed,
        "succeeded_exactly_once": states["SUCCEEDED"], "wrong": len(wrong),
        "refused_and_resent": resent, "records_missing_from_history": missing,
        "task_records_left_in_etcd": live_left, "done_chunks": len(chunks),
        "done_chunk_bytes": sum(len(v) for v in chunks.values()),
        "history_keys_in_redis": history_keys, "redis_used_memory": redis_mem,
        "corral_task_first_rc": first.returncode, "corral_task_first_says": first.stdout.strip()[:200],
    }
    print(f"{opts.tasks:,} tasks in {elapsed:.0f} s ({figures['tasks_per_second']:.0f}/s); "
          f"etcd at most {sampler.most / 2**20:.1f} MiB of a {opts.quota_mib} MiB quota "
          f"({100 * sampler.most / quota:.0f}%), {final_db / 2**20:.1f} MiB at the end; "
          f"succeeded exactly once: {states['SUCCEEDED']:,}, wrong: {len(wrong)}; refused and sent again: "
          f"{resent}; missing from history: {missing}; records left in etcd: {live_left}; "
          f"{len(chunks)} done chunks ({figures['done_chunk_bytes'] / 2**20:.1f} MiB); "
          f"Redis {redis_mem / 2**20:.0f} MiB for {history_keys:,} history records; "
          f"`corral task b0` exit {first.returncode}")
    if opts.json:
        print(json.dumps(figures))
    ok = (not wrong and not missing and first.returncode == 0 and sampler.most < quota / 2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
