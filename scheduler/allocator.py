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

import heapq
import itertools
import math
import operator
from collections.abc import Collection, Iterable, Mapping, Set
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
    keeps_surplus: bool = True  # False once closed: a closed session's idle GPUs move at once
    order: tuple[int, float, str] = field(init=False, repr=False, compare=False)  # who goes first

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", (-self.priority, self.opened, self.name))


@dataclass(frozen=True)
class AllocState:
    """What the allocator remembers between calls: when each session's surplus began."""

    surplus_since: Mapping[str, float] = field(default_factory=dict)


_order = operator.attrgetter("order")  # C-level: the allocator sorts sessions on every run

def fixed_room(capacity: int, reserve: int) -> int:
    """GPUs that fixed workers of all sessions together may hold, `reserve` of `capacity`
    kept for sharing (never all of it: one GPU at least goes to fixed workers)."""
    return max(min(capacity, 1), capacity - reserve)


def _fixed(capacity: int, ordered: list[SessionSpec], reserve: int = 0) -> dict[str, int]:
    out: dict[str, int] = {}
    left = fixed_room(capacity, reserve)
    for s in ordered:
        want = s.fixed if s.max_workers is None or s.fixed <= s.max_workers else s.max_workers
        n = out[s.name] = want if want < left else left
        left -= n
    return out


def water_fill(capacity: int, specs: list[SessionSpec], floors: Mapping[str, int],
               caps: Mapping[str, int]) -> dict[str, int]:
    """Integer shares: floor_i <= share_i <= cap_i, proportional to ratio above the floors."""
    if sum(caps.values()) <= capacity:  # caps holds exactly the specs' names
        return dict(caps)
    lam = _lambda(capacity, specs, floors, caps)
    ideal = {s.name: min(caps[s.name], max(floors[s.name], lam * s.ratio)) for s in specs}
    shares = {n: int(math.floor(v + 1e-9)) for n, v in ideal.items()}
    left = capacity - sum(shares.values())
    if left <= 0:
        return shares
    open_ = [s for s in specs if shares[s.name] < caps[s.name] and ideal[s.name] - shares[s.name] > 1e-9]
    for s in sorted(open_, key=lambda s: (-(ideal[s.name] - shares[s.name]), s.order))[:left]:
        shares[s.name] += 1
    return shares


def _lambda(capacity: int, specs: list[SessionSpec], floors: Mapping[str, int],
            caps: Mapping[str, int]) -> float:
    """The water level: used(lambda) = capacity.

    used(lambda) = sum of min(cap, max(floor, lambda x ratio)) is piecewise linear: a
    session adds its ratio to the slope from floor/ratio to cap/ratio. One sweep over
    the sorted breakpoints finds the level, O(S log S).
    """
    used = 0.0
    points: list[tuple[float, float]] = []
    for s in specs:
        floor, cap = floors[s.name], caps[s.name]
        used += floor
        if cap > floor:
            points.append((floor / s.ratio, s.ratio))
            points.append((cap / s.ratio, -s.ratio))
    if used >= capacity or not points:
        return 0.0
    points.sort()
    at = slope = 0.0
    for point, delta in points:
        reach = used + slope * (point - at)
        if reach >= capacity:
            return at + (capacity - used) / slope
        used, at = reach, point
        slope += delta
    return at


def shares(capacity: int, sessions: list[SessionSpec], demand: Mapping[str, int],
           held: Mapping[str, int] | None = None, reserve: int = 0) -> dict[str, int]:
    """GPU count per session. `held`: counts a session may keep above its fair share;
    `reserve`: GPUs that fixed workers may not take, so that idle sessions cannot starve
    the others."""
    ordered = sorted(sessions, key=_order)
    floors = _fixed(capacity, ordered, reserve)
    if held:
        left = capacity - sum(floors.values())
        for s in ordered:  # surplus in grace, from what is left
            keep = held.get(s.name)
            if keep is not None and keep > floors[s.name]:
                extra = min(keep - floors[s.name], left)
                floors[s.name] += extra
                left -= extra
    caps = {}
    get = demand.get
    for s in sessions:
        cap = get(s.name, 0)
        if s.max_workers is not None and cap > s.max_workers:
            cap = s.max_workers
        floor = floors[s.name]
        caps[s.name] = cap if cap > floor else floor
    return water_fill(capacity, sessions, floors, caps)


def place(targets: Mapping[str, int], gpus: Iterable[GpuKey], current: Mapping[GpuKey, str | None],
          busy: Mapping[GpuKey, int]) -> dict[GpuKey, str | None]:
    """Concrete GPUs for the target counts, moving as few as possible, idle ones first."""
    gpus = set(gpus)
    plan = {key: current.get(key) for key in gpus}
    plan.update(moves(targets, gpus, invert(current, gpus), busy))
    return plan


def invert(current: Mapping[GpuKey, str | None], gpus: Iterable[GpuKey]) -> dict[str, set[GpuKey]]:
    """Session -> the GPUs among `gpus` that the plan `current` gives it."""
    owned: dict[str, set[GpuKey]] = {}
    for key in gpus:
        owner = current.get(key)
        if owner is not None:
            owned.setdefault(owner, set()).add(key)
    return owned


def moves(targets: Mapping[str, int], gpus: Set[GpuKey], owned: Mapping[str | None, Collection[GpuKey]],
          busy: Mapping[GpuKey, int]) -> dict[GpuKey, str | None]:
    """Only the GPUs whose session changes: at scale a run moves a few of thousands.

    Work is proportional to the sessions and to the GPUs that may move (a shrinking
    session's surplus, the free ones), not to the whole pool; ties break on the GPU key,
    so the outcome does not depend on the order of any input.
    """
    released: list[GpuKey] = []  # GPUs leaving their session: surplus, or a session with none due
    staying: list[Collection[GpuKey]] = []
    for owner, keys in owned.items():
        if owner is None or not keys:
            continue
        keep = targets.get(owner, 0)
        if len(keys) <= keep:
            staying.append(keys)
        elif keep <= 0:
            released.extend(keys)
        else:
            ordered = sorted(keys, key=lambda k: (-busy.get(k, 0), k))  # busy GPUs are the last to go
            staying.append(ordered[:keep])
            released.extend(ordered[keep:])
    out: dict[GpuKey, str | None] = dict.fromkeys(released)
    needs = {name: n - len(owned.get(name, ())) for name, n in targets.items()
             if n > len(owned.get(name, ()))}
    if needs:
        if None in owned:  # the caller indexes unplanned GPUs too: no pass over the pool
            free = set(released).union(k for k in owned[None] if k in gpus)
        else:
            free = set(gpus).difference(*staying)
        chosen = iter(_idlest(free, sum(needs.values()), busy))
        for name in sorted(needs, key=lambda n: (-needs[n], n)):
            for key in itertools.islice(chosen, needs[name]):
                out[key] = name
    return out


def _idlest(free: set[GpuKey], k: int, busy: Mapping[GpuKey, int]) -> list[GpuKey]:
    """The k GPUs of `free` with the fewest outstanding attempts, ties by key, in that order."""
    idle = free.difference(busy)  # a plain dict makes this a walk over `free` alone
    if len(idle) >= k:
        return heapq.nsmallest(k, idle)
    rest = free - idle
    return sorted(idle) + heapq.nsmallest(k - len(idle), rest, key=lambda g: (busy.get(g, 0), g))


def allocate(
    gpus: Iterable[GpuKey],
    sessions: list[SessionSpec],
    demand: Mapping[str, int],
    current: Mapping[GpuKey, str | None],
    busy: Mapping[GpuKey, int],
    state: AllocState,
    now: float,
    grace: float,
) -> tuple[dict[GpuKey, str | None], AllocState]:
    """The plan for `gpus` (usable ones only) and the allocator's next state."""
    gpus = set(gpus)
    changed, state = changes(gpus, sessions, demand, current, busy, state, now, grace)
    plan = {key: current.get(key) for key in gpus}
    plan.update(changed)
    return plan, state


def changes(
    gpus: Set[GpuKey],
    sessions: list[SessionSpec],
    demand: Mapping[str, int],
    current: Mapping[GpuKey, str | None],
    busy: Mapping[GpuKey, int],
    state: AllocState,
    now: float,
    grace: float,
    owned: Mapping[str | None, Collection[GpuKey]] | None = None,
    reserve: int = 0,
) -> tuple[dict[GpuKey, str | None], AllocState]:
    """What `allocate` decides, as the GPUs whose session changes (the service's form).

    `owned` is `current` inverted (session -> its GPUs, all among `gpus`) for a caller
    that keeps that index: then a run costs nothing per GPU that stays where it is. Its
    None entry, if any, must hold every GPU of `gpus` that no session has.
    """
    if owned is None:
        owned = invert(current, gpus)
    names = {s.name for s in sessions}
    closed = {s.name for s in sessions if not s.keeps_surplus}
    have = {name: len(keys) for name, keys in owned.items() if name in names and keys}
    fair = shares(len(gpus), sessions, demand, reserve=reserve)
    since: dict[str, float] = {}
    held: dict[str, int] = {}
    for name, n in have.items():
        if fair.get(name, 0) < n and name not in closed:
            started = state.surplus_since.get(name, now)
            if now - started < grace:
                since[name] = started
                held[name] = n
    targets = shares(len(gpus), sessions, demand, held, reserve) if held else fair
    state = AllocState(since)
    if {n: c for n, c in targets.items() if c} == have:
        return {}, state  # nothing to move: the usual case under a steady load
    return moves(targets, gpus, owned, busy), state
