"""Placement is a pure function from a snapshot to assignments."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from corral.scheduler.placement import Constraint, Slot, assign


def slot(node: str, i: int, load: int = 0, session: str | None = "s", usable: bool = True) -> Slot:
    return Slot((node, i), load, usable, session)


def test_never_more_than_depth_outstanding_per_gpu() -> None:
    got = assign({"s": [f"t{i}" for i in range(10)]}, [slot("n", 0, 1), slot("n", 1)], depth=2)
    assert Counter(g for _, g in got) == {("n", 0): 1, ("n", 1): 2}


def test_least_loaded_gpus_are_filled_first() -> None:
    got = assign({"s": ["a", "b"]}, [slot("n", 0, 1), slot("n", 1), slot("n", 2)], depth=2)
    assert [g for _, g in got] == [("n", 1), ("n", 2)]


def test_unusable_gpus_get_nothing() -> None:
    assert assign({"s": ["a"]}, [slot("n", 0, usable=False)], depth=2) == []


def test_a_session_only_gets_the_gpus_planned_for_it() -> None:
    slots = [slot("n", 0, session="a"), slot("n", 1, session="b"), slot("n", 2, session=None)]
    got = dict(assign({"a": ["a1", "a2", "a3"], "b": ["b1"]}, slots, depth=1))
    assert got == {"a1": ("n", 0), "b1": ("n", 1)}


def test_tasks_of_a_session_leave_in_submit_order() -> None:
    got = assign({"s": ["a", "b", "c"]}, [slot("n", 0), slot("n", 1)], depth=2)
    assert [t for t, _ in got] == ["a", "b", "c"]


def test_a_failed_task_never_returns_to_a_gpu_it_failed_on() -> None:
    slots = [slot("n1", 0), slot("n1", 1), slot("n2", 0, 1)]
    rule = Constraint(frozenset({("n1", 0)}), frozenset({"n1"}))
    got = assign({"s": ["t"]}, slots, 2, {"t": rule}, [("t", "s", True)])
    assert got == [("t", ("n2", 0))]


def test_a_failed_task_uses_its_old_host_when_no_other_host_has_room() -> None:
    slots = [slot("n1", 0), slot("n1", 1), slot("n2", 0, 3)]
    rule = Constraint(frozenset({("n1", 0)}), frozenset({"n1"}))
    assert assign({"s": ["t"]}, slots, 2, {"t": rule}, [("t", "s", True)]) == [("t", ("n1", 1))]


def test_a_failed_task_borrows_a_gpu_outside_its_plan_when_its_own_are_excluded() -> None:
    slots = [slot("n1", 0, session="s"), slot("n2", 0, session=None)]
    rule = Constraint(frozenset({("n1", 0)}), frozenset({"n1"}))
    assert assign({"s": ["t"]}, slots, 2, {"t": rule}, [("t", "s", True)]) == [("t", ("n2", 0))]


def test_a_blocked_task_does_not_hold_up_the_tasks_behind_it() -> None:
    rule = Constraint(frozenset({("n1", 0)}))
    got = assign({"s": ["t", "u"]}, [slot("n1", 0)], 1, {"t": rule}, [("t", "s", False)])
    assert got == [("u", ("n1", 0))]


def test_urgent_tasks_go_first_and_may_take_one_slot_beyond_depth() -> None:
    slots = [slot("n", 0, 2), slot("n", 1, 2)]
    special = [("u1", "s", True), ("u2", "s", True), ("u3", "s", True)]
    got = assign({"s": ["x", "u1", "u2", "u3"]}, slots, 2, {}, special)
    assert sorted(got) == [("u1", ("n", 0)), ("u2", ("n", 1))]


@given(
    st.lists(st.integers(min_value=0, max_value=2), min_size=0, max_size=12),
    st.integers(min_value=0, max_value=40),
)
def test_assignments_respect_capacity_and_are_unique(outstanding: list[int], n: int) -> None:
    slots = [slot("n", i, o) for i, o in enumerate(outstanding)]
    got = assign({"s": [f"t{i}" for i in range(n)]}, slots, depth=2)
    assert len({t for t, _ in got}) == len(got)
    assert len(got) == min(n, sum(2 - o for o in outstanding))
    load = Counter(g for _, g in got)
    for s in slots:
        assert s.outstanding + load[s.key] <= 2
