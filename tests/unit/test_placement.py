"""Placement is a pure function from a snapshot to assignments."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from scheduler.placement import Slot, assign


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
