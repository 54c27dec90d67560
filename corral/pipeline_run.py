"""Running a pipeline: cut the source into items, submit each item's DAG, wait for the sinks.

The driver only submits. Once an item's tasks are in, the scheduler owns them: it holds
each stage until its upstream stages succeed, routes it, retries it, and cancels what
sits below a stage that failed for good; the driver may die and the run still finishes.
Running the same `run_id` again submits only what is missing (task ids are idempotency
keys) and waits for the whole run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.client import Client, Handle
from corral.pipelines import plan, sources
from corral.pipelines.spec import Pipeline

SEND_EVERY = 400  # tasks per flush to ingress for a file source (a stream flushes per item)


@dataclass
class RunReport:
    run: str
    items: int = 0
    frames: int = 0  # frames (video, images) or lines (text) read from the source
    tasks: int = 0
    succeeded: int = 0  # items whose rows are written
    failed: dict[int, str] = field(default_factory=dict)  # item -> why its rows are missing
    rows: int = 0
    submit_seconds: float = 0.0
    seconds: float = 0.0  # first submission to last sink outcome

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "items": self.items, "frames": self.frames, "tasks": self.tasks,
                "succeeded": self.succeeded, "failed": {str(k): v for k, v in self.failed.items()},
                "rows": self.rows, "submit_seconds": round(self.submit_seconds, 3),
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 1)}


def new_run_id(spec: Pipeline) -> str:
    return f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def submit(client: Client, spec: Pipeline, run_id: str, spool: Path | None = None,
           on_item: Callable[[int], None] | None = None) -> RunReport:
    """Open the session and submit every item's tasks; returns the report so far."""
    report = RunReport(run_id)
    session = spec.session
    algorithms = sorted({s.algorithm for s in spec.stages} | {plan.SINK_ALGORITHM})
    client.open_session(session.name, session.fixed_workers, session.share_ratio, algorithms=algorithms,
                        update=True)
    start = time.monotonic()
    live = spec.source.kind == "stream"
    pending: list[dict[str, Any]] = []
    for index, item in enumerate(sources.items(spec.source, spool or Path(".corral/spool") / run_id)):
        pending.extend(plan.expand(spec, run_id, index, item))
        report.items += 1
        report.frames += int(item["frames"])
        if live or len(pending) >= SEND_EVERY:
            report.tasks += len(client.send(pending))
            pending = []
        if on_item is not None:
            on_item(report.items)
    if pending:
        report.tasks += len(client.send(pending))
    report.submit_seconds = time.monotonic() - start
    return report


def finish(client: Client, report: RunReport, started: float, timeout: float | None = None,
           progress: Callable[[int], None] | None = None) -> RunReport:
    """Wait for every item's sink task; count rows, and say why any item has none."""
    sinks = [Handle(client, plan.task_id(report.run, i, plan.SINK_STAGE)) for i in range(report.items)]
    done = client.wait(sinks, timeout=timeout, progress=progress)
    ended = [r["events"][-1]["time"] for r in done.values() if r.get("events")]
    report.seconds = max(ended) - started if ended else 0.0
    for index, handle in enumerate(sinks):
        record = done[handle.id]
        if record.get("state") == "SUCCEEDED":
            report.succeeded += 1
            report.rows += int(client.result(record).get("rows", 0))
        else:
            report.failed[index] = ("; ".join(filter(None, [record.get("reason"), _error(record)]))
                                    or record.get("state", ""))
    return report


def run(client: Client, spec: Pipeline, run_id: str | None = None, spool: Path | None = None,
        wait: bool = True, timeout: float | None = None,
        progress: Callable[[int], None] | None = None) -> RunReport:
    started = time.time()
    report = submit(client, spec, run_id or new_run_id(spec), spool)
    return finish(client, report, started, timeout, progress) if wait else report


def _error(record: dict[str, Any]) -> str | None:
    error = record.get("error")
    return f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None
