"""Placement is a pure function from a snapshot to assignments."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from scheduler.placement import Constraint, Slot, assign


def test_never_more_than_depth_outstanding_per_gpu() -> None:
    slots = [Slot(("n", 0), 1), Slot(("n", 1), 0)]
    got = assign({"s": [f"t{i}" for i in range(10)]}, slots, depth=2)
    per_gpu = Counter(g for _, g in got)
    assert per_gpu == {("n", 0): 1, ("n", 1): 2}


def test_least_loaded_gpus_are_filled_first() -> None:
    slots = [Slot(("n", 0), 1), Slot(("n", 1), 0), Slot(("n", 2), 0)]
    got = assign({"s": ["a", "b"]}, slots, depth=2)
    assert [g for _, g in got] == [("n", 1), ("n", 2)]


def test_unusable_gpus_get_nothing() -> None:
    got = assign({"s": ["a", "b"]}, [Slot(("n", 0), 0, usable=False)], depth=2)
    assert got == []


def test_tasks_of_a_session_leave_in_submit_order() -> None:
    got = assign({"s": ["a", "b", "c"]}, [Slot(("n", 0), 0), Slot(("n", 1), 0)], depth=2)
    assert [t for t, _ in got] == ["a", "b", "c"]


def test_sessions_are_served_round_robin() -> None:
    got = assign({"a": ["a1", "a2", "a3"], "b": ["b1"]}, [Slot(("n", i), 0) for i in range(4)], 1)
    assert [t for t, _ in got] == ["a1", "b1", "a2", "a3"]


@given(
    st.lists(st.integers(min_value=0, max_value=2), min_size=0, max_size=12),
    st.integers(min_value=0, max_value=40),
)
def test_assignments_respect_capacity_and_are_unique(outstanding: list[int], n: int) -> None:
    slots = [Slot(("n", i), o) for i, o in enumerate(outstanding)]
    got = assign({"s": [f"t{i}" for i in range(n)]}, slots, depth=2)
    assert len({t for t, _ in got}) == len(got)
    capacity = sum(2 - o for o in outstanding)
    assert len(got) == min(n, capacity)
    load = Counter(g for _, g in got)
    for s in slots:
        assert s.outstanding + load[s.key] <= 2


def test_a_failed_task_never_returns_to_a_gpu_it_failed_on() -> None:
    slots = [Slot(("n1", 0), 0), Slot(("n1", 1), 0), Slot(("n2", 0), 1)]
    rule = Constraint(frozenset({("n1", 0)}), frozenset({"n1"}))
    assert assign({"s": ["t"]}, slots, 2, {"t": rule}) == [("t", ("n2", 0))]


def test_a_failed_task_uses_its_old_host_when_no_other_host_has_room() -> None:
    slots = [Slot(("n1", 0), 0), Slot(("n1", 1), 0), Slot(("n2", 0), 2)]
    rule = Constraint(frozenset({("n1", 0)}), frozenset({"n1"}))
    assert assign({"s": ["t"]}, slots, 2, {"t": rule}) == [("t", ("n1", 1))]


def test_a_blocked_task_does_not_hold_up_the_tasks_behind_it() -> None:
    slots = [Slot(("n1", 0), 0)]
    rule = Constraint(frozenset({("n1", 0)}))
    assert assign({"s": ["t", "u"]}, slots, 1, {"t": rule}) == [("u", ("n1", 0))]


def test_urgent_tasks_go_first_and_may_take_one_slot_beyond_depth() -> None:
    slots = [Slot(("n", 0), 2), Slot(("n", 1), 2)]
    got = assign({"s": ["x", "u1", "u2", "u3"]}, slots, 2, urgent=["u1", "u2", "u3"])
    assert sorted(got) == [("u1", ("n", 0)), ("u2", ("n", 1))]
