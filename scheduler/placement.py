"""Choosing GPUs for pending tasks: a pure function from a snapshot to assignments.

For now any usable GPU serves any session (the sessions allocator will narrow this to
the plan). Least loaded GPUs are filled first; sessions are served round-robin so that
one long backlog cannot starve another. A task that failed before carries constraints:
never a GPU it failed on, preferably not a host it failed on.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GpuKey = tuple[str, int]
NO_GPUS: frozenset[GpuKey] = frozenset()
NO_HOSTS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Slot:
    key: GpuKey
    outstanding: int
    usable: bool = True


@dataclass(frozen=True)
class Constraint:
    avoid_gpus: frozenset[GpuKey] = NO_GPUS
    avoid_hosts: frozenset[str] = NO_HOSTS  # a preference, not a rule


def assign(
    pending: Mapping[str, Iterable[str]],
    slots: Iterable[Slot],
    depth: int,
    constraints: Mapping[str, Constraint] | None = None,
) -> list[tuple[str, GpuKey]]:
    """Pair pending task ids with GPUs, never giving a GPU more than `depth` outstanding."""
    constraints = constraints or {}
    heap = [(s.outstanding, s.key) for s in slots if s.usable and s.outstanding < depth]
    heapq.heapify(heap)
    queues = deque((name, iter(ids)) for name, ids in sorted(pending.items()))
    out: list[tuple[str, GpuKey]] = []
    while heap and queues:
        name, ids = queues.popleft()
        task_id = next(ids, None)
        if task_id is None:
            continue
        queues.append((name, ids))
        rule = constraints.get(task_id)
        if rule is None:
            load, key = heapq.heappop(heap)
        else:
            picked = _pick(heap, rule)
            if picked is None:
                continue  # waits for an allowed GPU; later tasks are not held up
            load, key = heap.pop(picked)
            heapq.heapify(heap)
        out.append((task_id, key))
        if load + 1 < depth:
            heapq.heappush(heap, (load + 1, key))
    return out


def _pick(heap: list[tuple[int, GpuKey]], rule: Constraint) -> int | None:
    best: tuple[bool, int, GpuKey] | None = None
    index = None
    for i, (load, key) in enumerate(heap):
        if key in rule.avoid_gpus:
            continue
        rank = (key[0] in rule.avoid_hosts, load, key)
        if best is None or rank < best:
            best, index = rank, i
    return index
