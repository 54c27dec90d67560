"""The algorithm registry: named functions a GPU worker can run.

An algorithm may carry a ``setup()`` run once per worker process before its first
call (model loading); its return value is handed to every call as ``context.state``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Algorithm:
    name: str
    fn: Callable[..., Any]
    setup: Callable[[], Any] | None = None
    checkpointable: bool = False
    _state: Any = field(default=None, repr=False)
    _ready: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def warm(self) -> Any:
        """Run setup() once in this process and keep what it returns."""
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._state = self.setup() if self.setup else None
                    self._ready = True
        return self._state


_REGISTRY: dict[str, Algorithm] = {}


def algorithm(
    name: str,
    *,
    setup: Callable[[], Any] | None = None,
    checkpointable: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(args, ctx)`` under ``name``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"algorithm {name!r} is already registered")
        _REGISTRY[name] = Algorithm(name, fn, setup=setup, checkpointable=checkpointable)
        return fn

    return register


def get(name: str) -> Algorithm:
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def load_plugins() -> None:
    """Import the built-ins (diagnostics, media, the pipeline sink, command jobs) and every module named in
    CORRAL_ALGORITHMS (comma-separated)."""
    for module in ("corral.tasks.builtin", "corral.tasks.media", "corral.tasks.sink", "corral.tasks.job"):
        importlib.import_module(module)
    for module in filter(None, (m.strip() for m in os.environ.get("CORRAL_ALGORITHMS", "").split(","))):
        importlib.import_module(module)
