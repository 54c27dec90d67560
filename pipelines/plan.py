"""A pipeline item as tasks: one per stage plus the sink, linked by `after` (pure).

Task ids are `<run>.<item>.<stage>`: idempotency keys, so running the same run again
submits nothing twice and resumes where it stopped.
"""

from __future__ import annotations

from typing import Any

from corral.pipelines.spec import Pipeline, order

SINK_ALGORITHM = "corral.sink"
SINK_STAGE = "sink"


def task_id(run: str, index: int, stage: str) -> str:
    return f"{run}.{index:07d}.{stage}"


def expand(spec: Pipeline, run: str, index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The ingress kwargs (docs/contracts.md) of one item's tasks, upstream first; the sink last."""
    session, retry = spec.session.name, spec.retry.model_dump()
    out = []
    for stage in order(spec.stages):
        kwargs: dict[str, Any] = {
            "algorithm": stage.algorithm, "session": session, "retry": retry,
            "task_id": task_id(run, index, stage.name),
            "args": {**stage.args, "item": item},
        }
        if stage.after:
            kwargs["after"] = {up: task_id(run, index, up) for up in stage.after}
        out.append(kwargs)
    # The sink waits for every stage (an item is done when all of it is), writes the rows
    # of the stages it is given.
    out.append({
        "algorithm": SINK_ALGORITHM, "session": session, "retry": retry,
        "task_id": task_id(run, index, SINK_STAGE),
        "args": {"sink": spec.sink.model_dump(by_alias=True), "stages": spec.sink_stages(),
                 "run": run, "item": index, "spooled": item["path"] if item.get("spooled") else None},
        "after": {stage.name: task_id(run, index, stage.name) for stage in spec.stages},
    })
    return out
