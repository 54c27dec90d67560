"""Which etcd revision the leader may compact up to."""

from __future__ import annotations

from corral.scheduler.history import History


def test_nothing_is_compacted_before_the_history_is_as_old_as_it_keeps() -> None:
    h = History(keep=300.0)
    assert h.mark(0.0, 10) is None
    assert h.mark(60.0, 50) is None
    assert h.mark(299.0, 90) is None


def test_the_newest_revision_older_than_the_kept_window_is_compacted_up_to() -> None:
    h = History(keep=300.0)
    for t, rev in [(0.0, 10), (60.0, 50), (120.0, 80)]:
        h.mark(t, rev)
    assert h.mark(365.0, 200) == 50  # 0 and 60 are older than 300 s; 120 is not
    assert h.mark(366.0, 201) is None
    assert h.mark(425.0, 230) == 80
