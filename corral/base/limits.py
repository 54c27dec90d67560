"""Bounds on what one message may carry, checked at every boundary before anything else
looks at it: JSON that other processes (etcd, Celery, the workers) can take as it is.

Python's `json` and Celery's encoder write NaN and Infinity, which `int()` turns into
`OverflowError`; values nested a few hundred deep pass a size check and then break a
recursive encoder (Celery pickling an exception) far from where they came in.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # containers inside containers, counting the outermost
MAX_NAME = 200


class Unfit(ValueError):
    """A value that corral does not take; the message says why, for a person."""


def check_json(value: Any, what: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> int:
    """The size in bytes of `value` as compact JSON; `Unfit` when it nests deeper than
    `max_depth`, holds a number that is not finite, a key that is not a string, anything
    JSON does not have, or is larger than `max_bytes`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise Unfit(f"{what} nest deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        raise Unfit(f"{what} have a key that is not a string: {short(key)}")
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Unfit(f"{what} hold {item!r}, which standard JSON does not have")
        elif item is not None and not isinstance(item, str | int | bool):
            raise Unfit(f"{what} hold a {type(item).__name__}, which is not JSON")
    size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
    if size > max_bytes:
        raise Unfit(f"{what} are {size} bytes, over the {max_bytes}-byte limit")
    return size


def whole_number(value: Any, what: str, low: int, high: int) -> int:
    """An int (not a bool, not a float) from `low` to `high`."""
    if type(value) is not int or not low <= value <= high:
        raise Unfit(f"{what} must be a whole number from {low} to {high}, got {short(value)}")
    return value


def real_number(value: Any, what: str, low: float, high: float, *, above_low: bool = False) -> float:
    """A finite int or float within bounds (`above_low`: strictly above `low`)."""
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high \
            or (above_low and value == low):
        bound = f"above {low:g}" if above_low else f"from {low:g}"
        raise Unfit(f"{what} must be a number {bound} to {high:g}, got {short(value)}")
    return float(value)


def short(value: Any, limit: int = 60) -> str:
    """A value as it may appear in a reason: repr, cut to `limit` characters."""
    try:
        text = repr(value)
    except Exception:  # a repr that raises is not the reason's problem
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
