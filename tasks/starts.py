"""When a worker tells the scheduler that an attempt started.

A `started` event for every task doubles what the leader reads, decodes and acknowledges
for short tasks, whose outcome follows within milliseconds and carries `began` anyway (the
scheduler takes it for both). So an algorithm whose calls in this process have lately been
quick starts quietly: no `started` event, only the outcome. Should such a call run long
after all, its first heartbeat (`CORRAL_HEARTBEAT` seconds in) is sent as its `started`,
with the time it began; until then the scheduler shows the attempt DISPATCHED. The first
call of an algorithm in a process, and any after a slow one, is announced at once.
"""

from __future__ import annotations

import os
from typing import Any

QUICK = 0.05  # seconds: calls faster than this, on average, start quietly
WEIGHT = 0.3  # of the latest call in the running average

_took: dict[str, float] = {}  # algorithm -> running average of its calls in this process


def quiet(algorithm: Any) -> bool:
    took = _took.get(str(algorithm))
    return took is not None and took < QUICK


def ran(algorithm: Any, seconds: float) -> None:
    before = _took.get(str(algorithm))
    _took[str(algorithm)] = seconds if before is None else before + WEIGHT * (seconds - before)


def told_at_first_beat(event: Any, began: float) -> Any:
    """An attempt's event maker whose first heartbeat is its `started` event instead."""
    told = False

    def make(kind: str, **extra: Any) -> Any:
        nonlocal told
        if kind == "heartbeat" and not told:
            told = True
            return event("started", time=began, pid=os.getpid())
        return event(kind, **extra)

    return make
