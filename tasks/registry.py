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
    batch: int = 1  # most inputs in one call; over 1, fn takes a list of args and returns a list
    budget: float | None = None  # seconds one call may take, at most (the leader sizes calls by it)
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
    batch: int = 1,
    budget: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(args, ctx)`` under ``name``. With ``batch`` over 1 the algorithm is
    batch-capable: ``fn(list_of_args, ctx)`` returns one result per input, in order, and the
    leader sends it up to ``batch`` inputs per call (fewer when ``budget`` seconds would be
    exceeded at the measured time per input)."""
    if type(batch) is not int or not 1 <= batch <= 4096:
        raise ValueError(f"algorithm {name!r}: batch must be a whole number from 1 to 4096")
    if budget is not None and not budget > 0:
        raise ValueError(f"algorithm {name!r}: budget must be a positive number of seconds")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"algorithm {name!r} is already registered")
        _REGISTRY[name] = Algorithm(name, fn, setup=setup, checkpointable=checkpointable, batch=batch,
                                    budget=budget)
        return fn

    return register


def get(name: str) -> Algorithm:
    """An algorithm by name; the plugins are imported only when it is not yet known (this
    is on every task's path, and importing even a loaded module costs a lookup each)."""
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def batching() -> dict[str, dict[str, Any]]:
    """The batch-capable algorithms and their limits, as a node registers them."""
    load_plugins()
    return {a.name: {"max": a.batch, "budget": a.budget} for a in _REGISTRY.values() if a.batch > 1}


def load_plugins() -> None:
    """Import the built-ins (diagnostics, media, the pipeline sink, command jobs) and every module named in
    CORRAL_ALGORITHMS (comma-separated)."""
    for module in ("corral.tasks.builtin", "corral.tasks.media", "corral.tasks.sink", "corral.tasks.job",
                   "corral.tasks.embeddings", "corral.tasks.ocr"):
        importlib.import_module(module)
    for module in filter(None, (m.strip() for m in os.environ.get("CORRAL_ALGORITHMS", "").split(","))):
        importlib.import_module(module)
