"""`corral.sink`: the last task of every pipeline item, writing its stages' rows (M9)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from corral.base.config import Settings
from corral.pipelines import sinks
from corral.pipelines.spec import Sink
from corral.tasks.context import Context
from corral.tasks.registry import algorithm


@algorithm("corral.sink")
def sink(args: dict[str, Any], ctx: Context) -> dict[str, Any]:
    spec = Sink.model_validate(args["sink"])
    stages = args.get("stages") or list(ctx.inputs)
    written = sinks.write(spec, str(args["run"]), int(args["item"]),
                          {s: ctx.inputs[s] for s in stages}, broker=Settings.from_env().broker)
    spooled = args.get("spooled")
    if spooled:  # a live stream's segment file: its rows are safe, the file is not needed again
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spooled)
    return {"rows": written, "table": spec.table}
