"""The scheduler's collector settings rest on one fact: finished tasks are freed by
reference counting, so rare collections cost nothing in memory."""

from __future__ import annotations

import gc
import logging

from corral.scheduler import heap
from corral.scheduler.simulate import SimConfig, Simulation


def cyclic_garbage_after(tasks: int) -> int:
    """Objects only the cycle collector could free, left by a run of `tasks` tasks."""
    logging.disable(logging.WARNING)
    gc.collect()
    gc.disable()
    try:
        sim = Simulation(SimConfig(nodes=10, gpus_per_node=4, sessions=5, tasks=tasks, seed=3,
                                   arrival_seconds=2))
        sim.run()
        del sim
        return gc.collect()
    finally:
        gc.enable()
        logging.disable(logging.NOTSET)


def test_a_run_leaves_nothing_for_the_cycle_collector() -> None:
    assert cyclic_garbage_after(4000) == 0


def test_tuning_returns_the_settings_it_replaced() -> None:
    before = gc.get_threshold()
    try:
        assert heap.tune() == before
        assert gc.get_threshold() == heap.THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_a_simulation_leaves_the_collector_as_it_found_it() -> None:
    before = gc.get_threshold()
    logging.disable(logging.WARNING)
    try:
        Simulation(SimConfig(nodes=2, gpus_per_node=2, sessions=2, tasks=50, arrival_seconds=1)).run()
    finally:
        logging.disable(logging.NOTSET)
    assert gc.get_threshold() == before
