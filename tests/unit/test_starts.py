"""When a worker announces an attempt's start (tasks/starts.py): quick algorithms quietly,
the others at once, and a quiet call that runs long by its first heartbeat."""

from __future__ import annotations

from typing import Any

from corral.tasks import starts


def maker(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "time": 100.0, **extra}


def test_an_algorithm_not_yet_run_in_this_process_is_announced() -> None:
    assert not starts.quiet("never.ran")


def test_an_algorithm_whose_calls_are_quick_starts_quietly() -> None:
    for _ in range(3):
        starts.ran("quick.one", 0.002)
    assert starts.quiet("quick.one")


def test_a_slow_call_makes_the_next_ones_announced_again() -> None:
    starts.ran("mostly.quick", 0.001)
    starts.ran("mostly.quick", 5.0)
    assert not starts.quiet("mostly.quick")


def test_a_quiet_calls_first_heartbeat_is_its_start_stamped_when_it_began() -> None:
    make = starts.Quiet(maker, began=42.0)
    first, second = make("heartbeat"), make("heartbeat")
    assert (first["kind"], first["time"]) == ("started", 42.0)
    assert second["kind"] == "heartbeat"


def test_the_heartbeat_comes_early_for_a_quiet_call_only() -> None:
    assert starts.first_beat(starts.Quiet(maker, began=42.0)) == starts.ANNOUNCE
    assert starts.first_beat(maker) is None


def test_a_quiet_calls_outcome_is_made_as_usual() -> None:
    make = starts.Quiet(maker, began=42.0)
    assert make("succeeded", began=42.0) == {"kind": "succeeded", "time": 100.0, "began": 42.0}
