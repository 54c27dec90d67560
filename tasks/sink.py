"""`corral.sink`: the last task of every pipeline item, writing its stages' rows (M9)."""

from __future__ import annotations

import contextlib
from typing import Any

from corral.base.config import Settings
from corral.pipelines import sinks, sources
from corral.pipelines.spec import Sink
from corral.tasks.context import Context
from corral.tasks.registry import algorithm


@algorithm("corral.sink")
def sink(args: dict[str, Any], ctx: Context) -> dict[str, Any]:
    spec = Sink.model_validate(args["sink"])
    stages = args.get("stages") or list(ctx.inputs)
    written = sinks.write(spec, str(args["run"]), int(args["item"]),
                          {s: ctx.inputs[s] for s in stages}, broker=Settings.from_env().broker)
    # A live stream's segment file: its rows are safe, the file is not needed again. Only a
    # spooled segment is ever deleted, whatever path the message names.
    segment = sources.spooled_segment(args.get("spooled"))
    if segment is not None:
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()
    return {"rows": written, "table": spec.table}
