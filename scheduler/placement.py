"""Choosing GPUs for pending tasks: a pure function from a snapshot to assignments.

A task goes to a GPU that the plan gives its session (scheduler/allocator.py), least
loaded first, never beyond `depth` outstanding attempts. Two kinds of task get more:
urgent ones (re-routed after a loss, moved after failures) go first and may take one slot
beyond `depth`, so they start as soon as the GPU's running task ends; constrained ones
(which failed before) never return to a GPU they failed on, prefer another host, and may
borrow a GPU outside their session's plan when none of its own is allowed.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import NamedTuple

GpuKey = tuple[str, int]
NO_GPUS: frozenset[GpuKey] = frozenset()
NO_HOSTS: frozenset[str] = frozenset()


class Slot(NamedTuple):  # a tuple: thousands are made per tick at scale
    key: GpuKey
    outstanding: int
    usable: bool = True
    session: str | None = None  # whom the plan gives this GPU


@dataclass(frozen=True)
class Constraint:
    avoid_gpus: frozenset[GpuKey] = NO_GPUS
    avoid_hosts: frozenset[str] = NO_HOSTS  # a preference, not a rule


def assign(
    pending: Mapping[str, Iterable[str]],
    slots: Iterable[Slot],
    depth: int,
    constraints: Mapping[str, Constraint] | None = None,
    special: Iterable[tuple[str, str, bool]] = (),
) -> list[tuple[str, GpuKey]]:
    """Pair pending task ids with GPUs.

    `pending`: session -> task ids in submit order. `special`: (task id, session, urgent)
    for urgent or constrained tasks, oldest first; they are placed before the rest.
    """
    load: dict[GpuKey, int] = {}
    own: dict[str | None, list[GpuKey]] = {}
    for s in slots:
        if s.usable:
            load[s.key] = s.outstanding
            own.setdefault(s.session, []).append(s.key)
    return [(t, key) for ids, key in assign_grouped(pending, load, own, depth, constraints, special)
            for t in ids]


def assign_grouped(
    pending: Mapping[str, Iterable[str]],
    load: dict[GpuKey, int],
    own: Mapping[str | None, list[GpuKey]],
    depth: int,
    constraints: Mapping[str, Constraint] | None = None,
    special: Iterable[tuple[str, str, bool]] = (),
    batch: Mapping[str, int] | None = None,
    single: Container[GpuKey] = (),
) -> list[tuple[list[str], GpuKey]]:
    """`assign` over usable slots already grouped: `load` (GPU -> messages in flight, updated
    in place) and `own` (session, or None for unplanned, -> its GPUs). The service's form:
    it builds these straight from its indexes. Each result is one message.

    `batch` (session -> most tasks per message, M11): a session's backlog is spread over
    its free slots, up to that many tasks in each; a backlog smaller than its slots still
    gets one task per GPU, so batching never leaves a GPU idle. GPUs in `single` (suspect
    ones) get one task per message: a faulty GPU fails one task at a time.
    """
    constraints = constraints or {}
    out: list[tuple[list[str], GpuKey]] = []
    taken: set[str] = set()
    for task_id, session, urgent in special:
        rule = constraints.get(task_id)
        cap = depth + 1 if urgent else depth
        key = _best(load, own.get(session, ()), cap, rule)
        if key is None and rule is not None:  # borrow: unplanned GPUs first, then any
            key = _best(load, own.get(None, ()), depth, rule) or _best(load, load, depth, rule)
        if key is not None:
            out.append(([task_id], key))
            taken.add(task_id)
            load[key] += 1
    for session, ids in sorted(pending.items()):
        heap = [(load[k], k) for k in own.get(session, ()) if load[k] < depth]
        if not heap:
            continue
        heapq.heapify(heap)
        most = batch.get(session, 1) if batch else 1
        free = sum(depth - n for n, _ in heap)  # message slots left in this session's GPUs
        left = len(ids) if isinstance(ids, Sized) else 0
        group: list[str] = []
        size, key, n = 1, None, 0
        for task_id in ids:
            if task_id in taken or task_id in constraints:
                left -= 1
                continue
            if not group:
                if not heap:
                    break
                n, key = heapq.heappop(heap)
                size = max(1, min(most, -(-left // max(free, 1)))) if most > 1 and key not in single else 1
            group.append(task_id)
            left -= 1
            if len(group) >= size:
                out.append((group, key))
                group, free = [], free - 1
                load[key] = n + 1
                if n + 1 < depth:
                    heapq.heappush(heap, (n + 1, key))
        if group:
            out.append((group, key))
            load[key] = n + 1
    return out


def _best(load: Mapping[GpuKey, int], keys: Iterable[GpuKey], cap: int,
          rule: Constraint | None) -> GpuKey | None:
    """Least loaded GPU among `keys` under `cap` that the rule allows, other hosts first."""
    best: tuple[bool, int, GpuKey] | None = None
    for key in keys:
        n = load[key]
        if n >= cap or (rule is not None and key in rule.avoid_gpus):
            continue
        rank = (rule is not None and key[0] in rule.avoid_hosts, n, key)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[2]


def reserve(need: int, free: Mapping[str, Iterable[tuple[int, GpuKey]]],
            avoid_hosts: Container[str] = NO_HOSTS) -> list[GpuKey] | None:
    """`need` GPUs of one node for a gang, or None when no node has as many.

    `free`: node -> (messages in flight, GPU) of the GPUs the gang may take there. The node
    whose `need` least loaded GPUs hold the fewest messages wins (it starts soonest), hosts
    to avoid last, then by name; on it, those GPUs, in index order.
    """
    best: tuple[bool, int, str] | None = None
    chosen: list[GpuKey] = []
    for node, slots in free.items():
        ranked = sorted(slots, key=lambda s: (s[0], s[1]))
        if len(ranked) < need:
            continue
        rank = (node in avoid_hosts, sum(n for n, _ in ranked[:need]), node)
        if best is None or rank < best:
            best, chosen = rank, [k for _, k in ranked[:need]]
    return sorted(chosen) if best is not None else None
