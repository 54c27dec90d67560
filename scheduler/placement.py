"""Choosing GPUs for pending tasks: a pure function from a snapshot to assignments.

For now any healthy GPU serves any session, least loaded first; sessions are served
round-robin so that one long backlog cannot starve another.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GpuKey = tuple[str, int]


@dataclass(frozen=True)
class Slot:
    key: GpuKey
    outstanding: int
    usable: bool = True


def assign(
    pending: Mapping[str, Iterable[str]], slots: Iterable[Slot], depth: int
) -> list[tuple[str, GpuKey]]:
    """Pair pending task ids with GPUs, never giving a GPU more than `depth` outstanding."""
    free = sorted(
        (s for s in slots if s.usable and s.outstanding < depth), key=lambda s: (s.outstanding, s.key)
    )
    if not free:
        return []
    # Least loaded first: fill every GPU to level 1, then level 2, ...
    order: list[GpuKey] = []
    for level in range(depth):
        order.extend(s.key for s in free if s.outstanding <= level)
    queues = deque((name, iter(ids)) for name, ids in sorted(pending.items()))
    out: list[tuple[str, GpuKey]] = []
    for gpu in order:
        while queues:
            name, ids = queues.popleft()
            task_id = next(ids, None)
            if task_id is None:
                continue
            queues.append((name, ids))
            out.append((task_id, gpu))
            break
        else:
            break
    return out
