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
    urgent: Iterable[str] = (),
) -> list[tuple[str, GpuKey]]:
    """Pair pending task ids with GPUs, never giving a GPU more than `depth` outstanding.

    `urgent` tasks (re-routed after a loss or a failure, oldest first) go first and may
    take one slot beyond `depth`: published at high priority, they start as soon as the
    GPU's running task ends instead of waiting behind its queued one.
    """
    constraints = constraints or {}
    load = {s.key: s.outstanding for s in slots if s.usable}
    out: list[tuple[str, GpuKey]] = []
    taken: set[str] = set()
    for task_id in urgent:
        key = _best(load, depth + 1, constraints.get(task_id))
        if key is not None:
            out.append((task_id, key))
            taken.add(task_id)
            load[key] += 1
    heap = [(n, key) for key, n in load.items() if n < depth]
    heapq.heapify(heap)
    queues = deque((name, iter(ids)) for name, ids in sorted(pending.items()))
    while heap and queues:
        name, ids = queues.popleft()
        task_id = next(ids, None)
        if task_id is None:
            continue
        queues.append((name, ids))
        if task_id in taken:
            continue
        rule = constraints.get(task_id)
        if rule is None:
            n, key = heapq.heappop(heap)
        else:
            picked = _best(dict((k, n) for n, k in heap), depth, rule)
            if picked is None:
                continue  # waits for an allowed GPU; later tasks are not held up
            index = next(i for i, (_, k) in enumerate(heap) if k == picked)
            n, key = heap.pop(index)
            heapq.heapify(heap)
        out.append((task_id, key))
        if n + 1 < depth:
            heapq.heappush(heap, (n + 1, key))
    return out


def _best(load: Mapping[GpuKey, int], cap: int, rule: Constraint | None) -> GpuKey | None:
    """Least loaded GPU under `cap` that the rule allows, other hosts first."""
    best: tuple[bool, int, GpuKey] | None = None
    for key, n in load.items():
        if n >= cap or (rule is not None and key in rule.avoid_gpus):
            continue
        rank = (rule is not None and key[0] in rule.avoid_hosts, n, key)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[2]
