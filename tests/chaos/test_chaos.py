"""The chaos run CI does on every change (a longer one: `python -m tests.chaos`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Chaos, Plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nothing_is_lost_or_done_twice_under_chaos(tmp_path: Path) -> None:
    report = Chaos(tmp_path, Plan()).run()
    print("\n" + report.summary())
    assert report.faults and len(report.faults) == len(Plan().faults())
    assert report.lost == []
    assert report.duplicate_outcomes == []
    assert report.wrong_results == []
    assert report.ok, report.summary()
