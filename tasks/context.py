"""What an algorithm sees of the attempt it runs in."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Stop(BaseException):
    """The attempt stops here and runs again later, from its latest checkpoint: raised by
    `save_checkpoint` once the attempt was asked to move (a drain, a migrate), and by a job
    that exits with its checkpoint code. A BaseException, so that an algorithm's
    `except Exception` does not swallow it."""


@dataclass
class Context:
    task_id: str
    attempt_id: str
    node: str
    gpu: int
    session: str
    number: int = 1  # this task's attempt number, counting every try
    state: Any = None
    checkpoint: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)  # upstream results, by input name (M9)
    gpus: list[int] = field(default_factory=list)  # every GPU index it holds (a gang's: several)
    worker: Any = field(default=None, repr=False)  # the worker's settings and Redis, for built-ins
    _progress: Callable[[dict[str, Any]], None] = field(default=lambda info: None, repr=False)
    _save: Callable[[Any], None] = field(default=lambda state: None, repr=False)
    _asked: Callable[[], bool] = field(default=lambda: False, repr=False)
    _stop: Callable[[], float | None] = field(default=lambda: None, repr=False)
    _gone: Callable[[], bool] = field(default=lambda: False, repr=False)

    @property
    def cuda_visible_devices(self) -> str:
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")

    def save_checkpoint(self, state: Any) -> None:
        """Save a JSON value this task can resume from (M2): a retry, or an attempt on
        another host after a failure or a node loss, starts with it as `checkpoint`."""
        self._save(state)
        self.checkpoint = state
        if self._stop() is not None:
            raise Stop("checkpointed and stopped: asked to move")

    def checkpoint_requested(self) -> bool:
        """Whether the scheduler or an operator asked for a checkpoint since the last one
        (cheap enough to call between steps: it reads Redis at most twice a second)."""
        return self._asked() or self._stop() is not None

    def stop_requested(self) -> float | None:
        """The grace period (seconds) when the attempt was asked to stop and move, else None;
        `save_checkpoint` then stops it once the checkpoint is saved."""
        return self._stop()

    def superseded(self) -> bool:
        """Whether this attempt no longer counts (cancelled, or run elsewhere): stop now."""
        return self._gone()

    def progress(self, **info: Any) -> None:
        """Report progress; it reaches the scheduler as a status event."""
        self._progress(info)
