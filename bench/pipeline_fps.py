"""Pipeline frames per second (M9): a video through corral against the same work in-process.

    python bench/pipeline_fps.py [--frames 2000] [--segment 50] [--size 320x240]
                                 [--workers 2 4] [--json]

One synthetic clip (a bright disc crossing the frame, pipelines/clips.py), two stages per
segment of frames: `vision.bright` (threshold and moments per frame) and `vision.faces`
(OpenCV's Haar cascade), then a sink writing one row per frame into SQLite. Measured in
one run, on one machine:
  in-process  both stages over every segment in this process, one after the other, no
              scheduler, no broker, no database: the work itself, with OpenCV's own
              threads (its default, using every core) and with one thread;
  corral      `corral pipeline run` semantics (corral.pipeline_run) on a local cluster of
              3 schedulers and 1 node with W simulated GPUs: 3 tasks per segment, the
              sink held by the scheduler until both stages succeed; from the first
              submission to the last row written.
fps = frames / seconds; ratio = corral fps / the faster in-process fps (on a 2-core machine
the workers share the cores OpenCV's threads already use, so the ratio shows the cost of
scheduling, durable records, the DAG and the database; with real GPUs doing the work the
workers would run in parallel).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corral import pipeline_run as runner  # noqa: E402
from corral.base.config import Settings  # noqa: E402
from corral.client import Client  # noqa: E402
from corral.local import LocalCluster  # noqa: E402
from corral.pipelines import sources  # noqa: E402
from corral.pipelines.clips import tracking_pipeline, write_clip  # noqa: E402
from corral.pipelines.spec import Pipeline  # noqa: E402
from corral.tasks import registry  # noqa: E402
from corral.tasks.context import Context  # noqa: E402


def pipeline(clip: Path, db: Path, segment: int) -> Pipeline:
    return tracking_pipeline(clip, db, segment, name="fps")


def in_process(spec: Pipeline, threads: int | None = None) -> dict[str, Any]:
    """The stages' work alone: each algorithm over each segment, in this process."""
    import cv2

    default = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    try:
        return _in_process(spec)
    finally:
        cv2.setNumThreads(default)


def _in_process(spec: Pipeline) -> dict[str, Any]:
    algos = [(registry.get(s.algorithm), s.args) for s in spec.stages]
    for algo, _ in algos:
        algo.warm()
    frames, t0 = 0, time.perf_counter()
    for item in sources.items(spec.source):
        for algo, args in algos:
            algo.fn({**args, "item": item}, Context("bench", "bench.a1", "local", 0, "bench",
                                                    state=algo.warm()))
        frames += item["frames"]
    seconds = time.perf_counter() - t0
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds}


def through_corral(spec: Pipeline, workers: int, state: Path) -> dict[str, Any]:
    cluster = LocalCluster(state / f"corral-{workers}", nodes=1, gpus=workers, schedulers=3,
                           flower=False, settings=Settings(cluster="local"))
    cluster.start()
    try:
        client = Client(cluster.settings)
        try:
            warm = spec.model_copy(update={"source": spec.source.model_copy(update={"segment": 5})})
            warm = warm.model_copy(update={"name": "warm"})
            runner.run(client, _first(warm, workers * 2), timeout=300)  # workers up, cascades loaded
            time.sleep(1)
            report = runner.run(client, spec, timeout=1800)
        finally:
            client.close()
    finally:
        cluster.stop()
    if report.failed:
        raise SystemExit(f"{len(report.failed)} item(s) failed: {next(iter(report.failed.values()))}")
    return {"frames": report.frames, "items": report.items, "tasks": report.tasks, "rows": report.rows,
            "seconds": report.seconds, "submit_seconds": report.submit_seconds, "fps": report.fps}


def _first(spec: Pipeline, frames: int) -> Pipeline:
    """The same pipeline over the clip's first frames only (a warm-up)."""
    path = Path(spec.source.path)
    short = write_clip(path.with_name("warm.avi"), frames=frames)
    return spec.model_copy(update={"source": spec.source.model_copy(update={"path": str(short)})})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--segment", type=int, default=50)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    opts = parser.parse_args()
    width, height = (int(v) for v in opts.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="corral-fps-") as tmp:
        clip = write_clip(Path(tmp) / "clip.avi", frames=opts.frames, width=width, height=height)
        spec = pipeline(clip, Path(tmp) / "unused.db", opts.segment)
        base, single = in_process(spec), in_process(spec, threads=1)
        best = max(base["fps"], single["fps"])
        for w in opts.workers:
            got = through_corral(pipeline(clip, Path(tmp) / f"rows-{w}.db", opts.segment), w, Path(tmp))
            rows.append({"workers": w, "corral": got, "ratio": got["fps"] / best,
                         "ratio_one_thread": got["fps"] / single["fps"]})
    print(f"clip: {opts.frames} frames {width}x{height}, {opts.segment} frames per segment, "
          f"stages vision.bright + vision.faces, sink SQLite")
    print(f"in-process, no scheduler: {base['fps']:.0f} frames/s with OpenCV's threads, "
          f"{single['fps']:.0f} with one thread")
    print(f"{'workers':>7} | {'corral fps':>10} {'seconds':>8} {'submit s':>8} {'tasks':>6} {'rows':>6} | "
          f"{'ratio':>5} {'vs 1 thread':>11}")
    for r in rows:
        c = r["corral"]
        print(f"{r['workers']:>7} | {c['fps']:>10.0f} {c['seconds']:>8.2f} {c['submit_seconds']:>8.2f} "
              f"{c['tasks']:>6} {c['rows']:>6} | {r['ratio']:>5.2f} {r['ratio_one_thread']:>11.2f}")
    if opts.json:
        print(json.dumps({"frames": opts.frames, "size": opts.size, "segment": opts.segment,
                          "in_process": base, "in_process_one_thread": single, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
