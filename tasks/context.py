"""What an algorithm sees of the attempt it runs in."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
    _progress: Callable[[dict[str, Any]], None] = field(default=lambda info: None, repr=False)

    @property
    def cuda_visible_devices(self) -> str:
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")

    def progress(self, **info: Any) -> None:
        """Report progress; it reaches the scheduler as a status event."""
        self._progress(info)
