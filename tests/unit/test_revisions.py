"""Which etcd revision the leader may compact up to, and when it defragments."""

from __future__ import annotations

from corral.scheduler.revisions import PRESSED_KEEP, Revisions, defrag_due, pressed


def test_nothing_is_compacted_before_the_history_is_as_old_as_it_keeps() -> None:
    h = Revisions(keep=300.0)
    assert h.mark(0.0, 10) is None
    assert h.mark(60.0, 50) is None
    assert h.mark(299.0, 90) is None


def test_the_newest_revision_older_than_the_kept_window_is_compacted_up_to() -> None:
    h = Revisions(keep=300.0)
    for t, rev in [(0.0, 10), (60.0, 50), (120.0, 80)]:
        h.mark(t, rev)
    assert h.mark(365.0, 200) == 50  # 0 and 60 are older than 300 s; 120 is not
    assert h.mark(366.0, 201) is None
    assert h.mark(425.0, 230) == 80


def test_a_revision_already_compacted_up_to_is_not_asked_for_again() -> None:
    h = Revisions(keep=10.0)
    assert h.mark(0.0, 40) is None
    assert h.mark(10.0, 40) == 40
    assert [h.mark(10.0 + t, 40) for t in (1.0, 2.0, 30.0)] == [None, None, None]  # idle: nothing new
    h.mark(41.0, 55)
    assert h.mark(51.0, 55) == 55


def test_under_pressure_only_a_few_seconds_of_history_are_kept() -> None:
    h = Revisions(keep=60.0)
    for t, rev in [(0.0, 10), (2.0, 20), (4.0, 30)]:
        h.mark(t, rev)
    assert h.mark(4.0 + PRESSED_KEEP, 40, pressed=True) == 30


def test_pressure_starts_at_half_the_admission_mark() -> None:
    assert not pressed(49, 100)
    assert pressed(50, 100)


def test_defragmentation_runs_near_the_mark_and_not_twice_in_a_minute() -> None:
    assert not defrag_due(70, 100, now=1000.0, last=None)
    assert defrag_due(80, 100, now=1000.0, last=None)
    assert not defrag_due(90, 100, now=1030.0, last=1000.0)
    assert defrag_due(90, 100, now=1060.0, last=1000.0)
