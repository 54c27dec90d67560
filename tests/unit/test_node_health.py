"""Node policy: lost, rejoining after a stable window, flapping nodes stay out."""

from __future__ import annotations

from corral.scheduler.node_health import (
    DRAINED,
    LOST,
    QUARANTINED,
    REJOINING,
    UP,
    NodeHealth,
    NodePolicy,
    drain,
    on_lost,
    on_registered,
    on_tick,
    undrain,
)

P = NodePolicy(stable_after=10, max_losses=3, loss_window=600)


def test_a_new_node_is_up_at_once() -> None:
    h = on_registered(NodeHealth(), 0.0, first_time=True)
    assert h.state == UP and h.usable


def test_a_lost_node_rejoins_only_after_the_stable_window() -> None:
    h = on_lost(NodeHealth(), 100.0, P)
    assert h.state == LOST and not h.usable
    h = on_registered(h, 105.0, first_time=False)
    assert h.state == REJOINING and not h.usable
    assert on_tick(h, 114.0, P).state == REJOINING
    h = on_tick(h, 115.0, P)
    assert h.state == UP and h.usable


def test_a_flapping_node_is_quarantined_until_undrained() -> None:
    h = NodeHealth()
    for t in (0.0, 60.0, 120.0):
        h = on_lost(h, t, P)
        h = on_registered(h, t + 1, first_time=False)
    assert h.state == QUARANTINED
    assert on_tick(h, 10_000.0, P).state == QUARANTINED
    h = undrain(h, 10_001.0)
    assert h.state == UP and h.losses == ()


def test_losses_outside_the_window_are_forgotten() -> None:
    h = NodeHealth()
    for t in (0.0, 700.0, 1400.0):
        h = on_registered(on_lost(h, t, P), t + 1, first_time=False)
        h = on_tick(h, t + 20, P)
    assert h.state == UP


def test_a_drained_node_takes_no_work_and_undrain_restores_it() -> None:
    h = drain(NodeHealth(), 1.0)
    assert h.state == DRAINED and not h.usable
    assert undrain(h, 2.0).usable


def test_health_round_trips_through_its_record() -> None:
    h = on_lost(NodeHealth(), 3.0, P)
    assert NodeHealth.from_dict(h.to_dict()) == h
