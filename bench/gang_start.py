"""How soon a job on several GPUs starts behind a stream of small tasks (gang placement).

    python bench/gang_start.py [--runs 3] [--task-seconds 1.0] [--stream 120]

A local cluster (1 node, 4 simulated GPUs); a stream of `corral.sleep` tasks keeps every
GPU busy; a 4-GPU job is submitted at a different point of the running tasks in each run
(2 s, then a quarter, half, three quarters ... of a task later). Prints, per run, the
seconds from the job's submission to its start, how long the tasks running at submission
still had to go (the least the job must wait: it preempts nothing), and how many stream
tasks were still unfinished when it started (a job that waited for the stream to end would
see none).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from corral.base.config import Settings
from corral.client import Client
from corral.local import LocalCluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--task-seconds", type=float, default=1.0)
    parser.add_argument("--stream", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(Path(tmp), nodes=1, gpus=4, schedulers=1, flower=False,
                               settings=Settings(cluster="gang"))
        cluster.start()
        try:
            client = Client(cluster.settings)
            for run in range(1, args.runs + 1):
                stream = client.map("corral.sleep", [{"seconds": args.task_seconds}] * args.stream,
                                    session="stream")
                time.sleep(2.0 + args.task_seconds * (run % 4) / 4)
                asked = time.time()
                job = client.job([sys.executable, "-c", "print('all four')"], gpus=4, session="stream")
                job.result(timeout=300)
                started = client.task(job.id)["attempts"][-1]["started"]
                records = {h.id: client.task(h.id) or {} for h in stream}
                unfinished = sum(1 for r in records.values() if not any(
                    a.get("ended") and a["ended"] <= started for a in r.get("attempts", [])))
                running = [a["ended"] for r in records.values() for a in r.get("attempts", [])
                           if a.get("started") and a["started"] <= asked and a.get("ended")
                           and a["ended"] > asked and a["state"] == "SUCCEEDED"]
                left = max(running, default=asked) - asked
                client.wait(stream, timeout=600)
                print(f"run {run}: the 4-GPU job started {started - asked:.2f} s after its submission; "
                      f"the tasks running then had {left:.2f} s to go ({args.task_seconds:g} s tasks); "
                      f"{unfinished} of {args.stream} stream tasks were unfinished then", flush=True)
            client.close()
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
