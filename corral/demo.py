"""`corral demo`: a local cluster, a session, a batch of tasks, a summary, a clean stop."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.client import Client
from corral.display import progress_bar
from corral.local import LocalCluster


def _pipeline(client: Client, state_dir: Path, console: Console, frames: int = 200) -> bool:
    """A video pipeline (M9) into SQLite; checks that every frame's row says where the disc was."""
    try:
        import sqlalchemy as sa

        from corral import pipeline_run as runner
        from corral.pipelines.clips import disc_x, tracking_pipeline, write_clip
    except ImportError as exc:
        console.print(f"pipeline part skipped: {exc} (pip install 'corral[media]')")
        return True
    clip = write_clip(state_dir.resolve() / "clip.avi", frames=frames)
    db = state_dir.resolve() / "rows.db"
    spec = tracking_pipeline(clip, db, segment=25, name="demo",
                             session={"name": "video", "fixed_workers": 1})
    with progress_bar(console) as bar:
        job = bar.add_task("pipeline items", total=frames // 25)
        report = runner.run(client, spec, timeout=300, progress=lambda n: bar.update(job, completed=n))
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        rows = conn.execute(sa.text("select frame, x from frames where run = :r"), {"r": report.run}).all()
    right = sum(1 for frame, x in rows if x is not None and abs(x - disc_x(frame)) < 1.0)
    console.print(f"pipeline {report.run}: {report.frames} frames, 2 stages + sink per "
                  f"{spec.source.segment} frames, {report.rows} rows in {db.name} "
                  f"({right} placed right) in {report.seconds:.2f} s ({report.fps:.0f} frames/s)")
    return report.succeeded == report.items and right == frames


def run_demo(tasks: int = 200, gpus: int = 4, state_dir: Path = Path(".corral-demo")) -> int:
    console = Console()
    console.print(f"[bold]corral demo[/]: starting etcd, Redis, 3 schedulers, 1 node with "
                  f"{gpus} simulated GPUs and Flower in {state_dir} ...")
    started = time.monotonic()
    cluster = LocalCluster(state_dir, nodes=1, gpus=gpus, schedulers=3)
    cluster.start()
    try:
        client = Client(cluster.settings)
        st = client.status()
        page = next(r["address"] for r in st["schedulers"] if r["role"] == "leader")
        console.print(f"cluster ready in {time.monotonic() - started:.1f} s (every GPU worker consuming); "
                      f"leader {st['leader']['id']}; status page and /metrics at {page}/ ; Flower at "
                      f"{cluster.info.get('flower')} (user and password in {state_dir}/cluster.json)")
        with client.session("demo", fixed_workers=1, share_ratio=1.0) as session:
            t0 = time.monotonic()
            client.wait(session.map("corral.echo", [{"cold": i} for i in range(20)]), timeout=120)
            console.print(f"cold start: the session's first 20 tasks in {time.monotonic() - t0:.2f} s "
                          "(its GPUs planned, first messages)")
            t0 = time.monotonic()
            handles = session.map("corral.echo", [{"i": i} for i in range(tasks)])
            with progress_bar(console) as bar:
                job = bar.add_task("corral.echo", total=tasks)
                records = client.wait(handles, timeout=300,
                                      progress=lambda n: bar.update(job, completed=n))
        elapsed = time.monotonic() - t0
        states = Counter(r["state"] for r in records.values())
        wrong = sum(
            1 for i, h in enumerate(handles)
            if records[h.id]["state"] == "SUCCEEDED" and client.result(records[h.id]) != {"i": i}
        )
        per_gpu = Counter(
            f"{r['attempts'][-1]['node']}:{r['attempts'][-1]['gpu']}" for r in records.values()
        )
        console.print(f"warm: {tasks} corral.echo tasks in {elapsed:.2f} s ({tasks / elapsed:.0f} tasks/s)")
        table = Table("GPU", "tasks", title="where they ran")
        for gpu, n in sorted(per_gpu.items()):
            table.add_row(gpu, str(n))
        console.print(table)
        console.print("states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())) +
                      f"; wrong results: {wrong}")
        ok = states.get("SUCCEEDED", 0) == tasks and wrong == 0
        ok = _pipeline(client, state_dir, console) and ok
        console.print("[green]demo passed[/]" if ok else "[red]demo FAILED[/]")
        client.close()
        return 0 if ok else 1
    finally:
        console.print("stopping the cluster ...")
        cluster.stop()
