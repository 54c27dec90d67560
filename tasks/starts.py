"""When a worker tells the scheduler that an attempt started.

A `started` event for every task doubles what the leader reads, decodes and acknowledges
for short tasks, whose outcome follows within milliseconds and carries `began` anyway (the
scheduler takes it for both). So an algorithm whose calls in this process have lately been
quick starts quietly: no `started` event, only the outcome. Should such a call run long
after all, the process's heartbeat thread sends its `started`, with the time it began,
ANNOUNCE seconds in (within two of its wake-ups, `tasks/runner.py`); until then the
scheduler shows the attempt DISPATCHED. The first call of an algorithm in a process, and
any after a slow one, is announced at once.
"""

from __future__ import annotations

import os
from typing import Any

QUICK = 0.05  # seconds: calls faster than this, on average, start quietly
ANNOUNCE = 0.1  # seconds into a quiet call when its `started` goes out after all
WEIGHT = 0.3  # of the latest call in the running average

_took: dict[str, float] = {}  # algorithm -> running average of its calls in this process


def quiet(algorithm: Any) -> bool:
    took = _took.get(str(algorithm))
    return took is not None and took < QUICK


def ran(algorithm: Any, seconds: float) -> None:
    before = _took.get(str(algorithm))
    _took[str(algorithm)] = seconds if before is None else before + WEIGHT * (seconds - before)


class Quiet:
    """An attempt's event maker whose first heartbeat, due ANNOUNCE seconds in, is its
    `started` event instead."""

    first_beat = ANNOUNCE

    def __init__(self, event: Any, began: float) -> None:
        self.event, self.began, self.told = event, began, False

    def __call__(self, kind: str, **extra: Any) -> Any:
        if kind == "heartbeat" and not self.told:
            self.told = True
            return self.event("started", time=self.began, pid=os.getpid())
        return self.event(kind, **extra)


def first_beat(event: Any) -> float | None:
    """When the heartbeat thread should first beat for this work (None: its usual period)."""
    return event.first_beat if isinstance(event, Quiet) else None
