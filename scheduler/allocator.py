"""Which session each GPU serves: a pure function from a snapshot to a plan.

1. Fixed workers first: every open session gets its `fixed_workers` while capacity lasts,
   by priority (higher first), then opening order, when capacity is short.
2. Then the pool is shared in proportion to `share_ratio` by weighted water-filling: a
   session gets max(its floor, lambda x ratio), never more than its demand (pending +
   running tasks) or `max_workers`; lambda is chosen so the pool is used up. A session
   whose demand does not exceed its fixed workers gets no extra GPU.
3. Counts become concrete GPUs with as few moves as possible: a session keeps the GPUs it
   has, gives back idle ones first, and takes free ones.
4. Hysteresis: a session that would shrink keeps its surplus for an idle grace period
   (unless fixed workers elsewhere need those GPUs), so a backlog that dips does not flap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

GpuKey = tuple[str, int]


@dataclass(frozen=True)
class SessionSpec:
    name: str
    fixed: int = 0
    ratio: float = 1.0
    max_workers: int | None = None
    priority: int = 0
    opened: float = 0.0

    @property
    def order(self) -> tuple[int, float, str]:
        return (-self.priority, self.opened, self.name)


@dataclass(frozen=True)
class AllocState:
    """What the allocator remembers between calls: when each session's surplus began."""

    surplus_since: Mapping[str, float] = field(default_factory=dict)


def fixed_shares(capacity: int, sessions: Iterable[SessionSpec]) -> dict[str, int]:
    out: dict[str, int] = {}
    left = capacity
    for s in sorted(sessions, key=lambda s: s.order):
        want = s.fixed if s.max_workers is None else min(s.fixed, s.max_workers)
        out[s.name] = min(want, left)
        left -= out[s.name]
    return out


def water_fill(capacity: int, specs: list[SessionSpec], floors: Mapping[str, int],
               caps: Mapping[str, int]) -> dict[str, int]:
    """Integer shares: floor_i <= share_i <= cap_i, proportional to ratio above the floors."""
    total_cap = sum(caps[s.name] for s in specs)
    if total_cap <= capacity:
        return {s.name: caps[s.name] for s in specs}
    lam = _lambda(capacity, specs, floors, caps)
    ideal = {s.name: min(caps[s.name], max(floors[s.name], lam * s.ratio)) for s in specs}
    shares = {n: int(math.floor(v + 1e-9)) for n, v in ideal.items()}
    left = capacity - sum(shares.values())
    by_remainder = sorted(specs, key=lambda s: (-(ideal[s.name] - shares[s.name]), s.order))
    for s in by_remainder:
        if left <= 0:
            break
        if shares[s.name] < caps[s.name] and ideal[s.name] - shares[s.name] > 1e-9:
            shares[s.name] += 1
            left -= 1
    return shares


def _lambda(capacity: int, specs: list[SessionSpec], floors: Mapping[str, int],
            caps: Mapping[str, int]) -> float:
    """The water level: used(lambda) = capacity, by bisection over the breakpoints."""
    def used(lam: float) -> float:
        return sum(min(caps[s.name], max(floors[s.name], lam * s.ratio)) for s in specs)

    points = sorted({0.0} | {floors[s.name] / s.ratio for s in specs}
                    | {caps[s.name] / s.ratio for s in specs})
    if used(points[-1]) < capacity:
        return points[-1]
    lo, hi = 0, len(points) - 1  # used() is non-decreasing: find the first point reaching capacity
    while lo < hi:
        mid = (lo + hi) // 2
        if used(points[mid]) >= capacity:
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        return points[0]
    a, b = points[lo - 1], points[lo]
    u_a, u_b = used(a), used(b)  # linear between neighbouring breakpoints
    return a if u_b == u_a else a + (b - a) * (capacity - u_a) / (u_b - u_a)


def shares(capacity: int, sessions: list[SessionSpec], demand: Mapping[str, int],
           held: Mapping[str, int] | None = None) -> dict[str, int]:
    """GPU count per session. `held`: counts a session may keep above its fair share."""
    held = held or {}
    fixed = fixed_shares(capacity, sessions)
    left = capacity - sum(fixed.values())
    floors = dict(fixed)
    for s in sorted(sessions, key=lambda s: s.order):  # surplus in grace, from what is left
        extra = min(max(0, held.get(s.name, 0) - floors[s.name]), left)
        floors[s.name] += extra
        left -= extra
    caps = {}
    for s in sessions:
        cap = demand.get(s.name, 0)
        if s.max_workers is not None:
            cap = min(cap, s.max_workers)
        caps[s.name] = max(floors[s.name], cap)
    return water_fill(capacity, sessions, floors, caps)


def place(targets: Mapping[str, int], gpus: list[GpuKey], current: Mapping[GpuKey, str | None],
          busy: Mapping[GpuKey, int]) -> dict[GpuKey, str | None]:
    """Concrete GPUs for the target counts, moving as few as possible, idle ones first."""
    plan: dict[GpuKey, str | None] = {}
    kept: dict[str, list[GpuKey]] = {}
    for key in gpus:
        owner = current.get(key)
        if owner is not None and targets.get(owner, 0) > 0:
            kept.setdefault(owner, []).append(key)
    free: list[GpuKey] = [k for k in gpus if current.get(k) is None or targets.get(current[k], 0) == 0]
    for owner, keys in kept.items():
        keys.sort(key=lambda k: (-busy.get(k, 0), k))  # busy GPUs are the last to go
        keep = targets[owner]
        for key in keys[:keep]:
            plan[key] = owner
        free.extend(keys[keep:])
    free.sort(key=lambda k: (busy.get(k, 0), k), reverse=True)  # pop() takes the idlest
    placed = Counter(plan.values())
    needs = {name: n - placed.get(name, 0) for name, n in targets.items()}
    for name in sorted(needs, key=lambda n: (-needs[n], n)):
        while needs[name] > 0 and free:
            plan[free.pop()] = name
            needs[name] -= 1
    for key in free:
        plan[key] = None
    return plan


def allocate(
    gpus: list[GpuKey],
    sessions: list[SessionSpec],
    demand: Mapping[str, int],
    current: Mapping[GpuKey, str | None],
    busy: Mapping[GpuKey, int],
    state: AllocState,
    now: float,
    grace: float,
) -> tuple[dict[GpuKey, str | None], AllocState]:
    """The plan for `gpus` (usable ones only) and the allocator's next state."""
    names = {s.name for s in sessions}
    counted = Counter(map(current.get, gpus))
    have = {name: n for name, n in counted.items() if name in names}
    fair = shares(len(gpus), sessions, demand)
    since: dict[str, float] = {}
    held: dict[str, int] = {}
    for name, n in have.items():
        if fair.get(name, 0) < n:
            started = state.surplus_since.get(name, now)
            if now - started < grace:
                since[name] = started
                held[name] = n
    targets = shares(len(gpus), sessions, demand, held) if held else fair
    state = AllocState(since)
    if ({n: c for n, c in targets.items() if c} == have and len(current) == len(gpus)
            and current.keys() == set(gpus)):
        return dict(current), state  # nothing to move: the usual case under a steady load
    return place(targets, sorted(gpus), current, busy), state
