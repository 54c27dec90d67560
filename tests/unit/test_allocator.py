"""The allocator: fixed workers first, then share ratios by water-filling, stable plans."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.scheduler.allocator import AllocState, SessionSpec, allocate, place, shares

GPUS = [("n1", i) for i in range(4)] + [("n2", i) for i in range(4)]
BACKLOG = 10_000


def counts(plan: dict) -> Counter:
    return Counter(s for s in plan.values() if s is not None)


def test_two_backlogged_sessions_split_by_ratio_above_their_fixed_workers() -> None:
    a, b = SessionSpec("A", fixed=1, ratio=1, opened=1), SessionSpec("B", fixed=1, ratio=3, opened=2)
    assert shares(8, [a, b], {"A": BACKLOG, "B": BACKLOG}) == {"A": 2, "B": 6}


def test_fixed_workers_are_held_without_demand() -> None:
    a = SessionSpec("A", fixed=2)
    assert shares(8, [a], {}) == {"A": 2}


def test_no_extra_gpu_for_a_session_without_excess_demand() -> None:
    a, b = SessionSpec("A", fixed=2, ratio=5), SessionSpec("B", ratio=1)
    assert shares(8, [a, b], {"A": 2, "B": BACKLOG}) == {"A": 2, "B": 6}


def test_demand_and_max_workers_cap_a_session() -> None:
    a, b = SessionSpec("A", ratio=10, max_workers=3), SessionSpec("B", ratio=1)
    assert shares(8, [a, b], {"A": BACKLOG, "B": 1}) == {"A": 3, "B": 1}


def test_fixed_workers_go_by_priority_then_opening_order_when_short() -> None:
    low = SessionSpec("low", fixed=3, priority=0, opened=1)
    high = SessionSpec("high", fixed=3, priority=5, opened=2)
    late = SessionSpec("late", fixed=3, priority=0, opened=3)
    got = shares(4, [low, high, late], {})
    assert got == {"high": 3, "low": 1, "late": 0}


def test_a_new_fixed_session_takes_gpus_from_dynamic_shares_at_once() -> None:
    a, b = SessionSpec("A", fixed=1, ratio=1, opened=1), SessionSpec("B", fixed=1, ratio=3, opened=2)
    demand = {"A": BACKLOG, "B": BACKLOG}
    plan, state = allocate(GPUS, [a, b], demand, {}, {}, AllocState(), 0.0, grace=5)
    c = SessionSpec("C", fixed=2, opened=3)
    plan2, _ = allocate(GPUS, [a, b, c], demand, plan, {}, state, 0.1, grace=5)
    assert counts(plan2)["C"] == 2


def test_surplus_is_kept_for_the_idle_grace_then_returned() -> None:
    a, b = SessionSpec("A", ratio=1, opened=1), SessionSpec("B", ratio=3, opened=2)
    plan, state = allocate(GPUS, [a, b], {"A": BACKLOG, "B": BACKLOG}, {}, {}, AllocState(), 0.0, 2.0)
    assert counts(plan) == {"A": 2, "B": 6}
    drained = {"A": BACKLOG, "B": 0}
    plan, state = allocate(GPUS, [a, b], drained, plan, {}, state, 1.0, 2.0)
    assert counts(plan)["B"] == 6  # within the grace
    plan, state = allocate(GPUS, [a, b], drained, plan, {}, state, 3.1, 2.0)
    assert counts(plan) == {"A": 8}


def test_a_closed_session_keeps_no_surplus_its_gpus_move_at_once() -> None:
    a, b = SessionSpec("A", ratio=1, opened=1), SessionSpec("B", ratio=3, opened=2)
    plan, state = allocate(GPUS, [a, b], {"A": BACKLOG, "B": BACKLOG}, {}, {}, AllocState(), 0.0, 2.0)
    closed = SessionSpec("B", ratio=3, opened=2, keeps_surplus=False)
    plan, state = allocate(GPUS, [a, closed], {"A": BACKLOG, "B": 0}, plan, {}, state, 1.0, 2.0)
    assert counts(plan) == {"A": 8}


def test_the_same_input_gives_the_same_plan() -> None:
    sessions = [SessionSpec("A", fixed=1, ratio=2), SessionSpec("B", ratio=1)]
    demand = {"A": 5, "B": 9}
    p1, _ = allocate(GPUS, sessions, demand, {}, {}, AllocState(), 0.0, 2.0)
    p2, _ = allocate(GPUS, sessions, demand, {}, {}, AllocState(), 0.0, 2.0)
    assert p1 == p2


def test_a_plan_that_still_fits_does_not_move() -> None:
    sessions = [SessionSpec("A", ratio=1), SessionSpec("B", ratio=1)]
    demand = {"A": BACKLOG, "B": BACKLOG}
    plan, state = allocate(GPUS, sessions, demand, {}, {}, AllocState(), 0.0, 2.0)
    again, _ = allocate(GPUS, sessions, demand, plan, {}, state, 1.0, 2.0)
    assert again == plan


def test_place_gives_back_idle_gpus_first() -> None:
    current = {k: "A" for k in GPUS[:4]}
    busy = {GPUS[0]: 2, GPUS[1]: 0, GPUS[2]: 1, GPUS[3]: 0}
    plan = place({"A": 2, "B": 2}, GPUS[:4], current, busy)
    assert {k for k, s in plan.items() if s == "A"} == {GPUS[0], GPUS[2]}


specs = st.lists(
    st.builds(SessionSpec, name=st.sampled_from("ABCDEFGH"), fixed=st.integers(0, 4),
              ratio=st.floats(0.1, 10), max_workers=st.one_of(st.none(), st.integers(0, 12)),
              priority=st.integers(0, 3), opened=st.floats(0, 100)),
    min_size=1, max_size=6, unique_by=lambda s: s.name)


@settings(max_examples=300, deadline=None)
@given(specs, st.integers(0, 24), st.dictionaries(st.sampled_from("ABCDEFGH"), st.integers(0, 40)))
def test_shares_respect_capacity_caps_and_fixed_workers(sessions, capacity, demand) -> None:
    got = shares(capacity, sessions, demand)
    assert sum(got.values()) <= capacity
    by_name = {s.name: s for s in sessions}
    total_fixed = sum(min(s.fixed, s.max_workers if s.max_workers is not None else s.fixed)
                      for s in sessions)
    for name, n in got.items():
        s = by_name[name]
        fixed = min(s.fixed, s.max_workers) if s.max_workers is not None else s.fixed
        cap = max(fixed, min(demand.get(name, 0), s.max_workers if s.max_workers is not None else 10**9))
        assert n <= cap
        if total_fixed <= capacity:
            assert n >= fixed  # fixed shares honoured when capacity suffices
        if demand.get(name, 0) <= fixed:
            assert n <= fixed  # no extra GPUs without excess demand
    wanted = sum(max(min(s.fixed, s.max_workers if s.max_workers is not None else s.fixed),
                     min(demand.get(s.name, 0), s.max_workers if s.max_workers is not None else 10**9))
                 for s in sessions)
    assert sum(got.values()) == min(capacity, wanted)  # work-conserving


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.lists(st.floats(0.1, 10), min_size=2, max_size=6))
def test_backlogged_sessions_get_their_ratio_within_one_gpu(capacity, ratios) -> None:
    sessions = [SessionSpec(f"s{i}", ratio=r) for i, r in enumerate(ratios)]
    got = shares(capacity, sessions, {s.name: 10**6 for s in sessions})
    total = sum(ratios)
    for s in sessions:
        assert abs(got[s.name] - capacity * s.ratio / total) < 1.0 + 1e-9


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(0.1, 10), min_size=2, max_size=5), st.integers(0, 4))
def test_one_more_task_of_demand_moves_few_gpus_and_only_as_many_as_the_counts_change(
    ratios, who
) -> None:
    sessions = [SessionSpec(f"s{i}", ratio=r) for i, r in enumerate(ratios)]
    demand = {s.name: 3 for s in sessions}
    plan, state = allocate(GPUS, sessions, demand, {}, {}, AllocState(), 0.0, 0.0)
    demand2 = dict(demand)
    name = sessions[who % len(sessions)].name
    demand2[name] += 1
    plan2, _ = allocate(GPUS, sessions, demand2, plan, {}, state, 1.0, 0.0)
    moved = sum(1 for k in GPUS if plan[k] != plan2[k])
    before, after = counts(plan), counts(plan2)
    assert moved == sum(max(0, after[n] - before[n]) for n in after)  # no needless moves
    assert moved <= 2
