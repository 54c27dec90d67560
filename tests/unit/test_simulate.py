"""The scale simulator drives the real core; its invariants must hold, with and without faults."""

from __future__ import annotations

import logging

from corral.scheduler.simulate import SimConfig, simulate


def run(**kw: object) -> dict:
    logging.disable(logging.WARNING)
    try:
        return simulate(SimConfig(**kw))  # type: ignore[arg-type]
    finally:
        logging.disable(logging.NOTSET)


def test_every_task_succeeds_once_on_a_healthy_cluster() -> None:
    f = run(nodes=4, gpus_per_node=4, sessions=3, tasks=2000, arrival_seconds=5)
    assert f["invariants_hold"], f["violations"]
    assert f["outcomes"] == {"SUCCEEDED": 2000}
    assert f["gpus_quarantined"] == 0
    assert f["routing_decisions"] >= 2000  # a few move when GPUs change hands between sessions


def test_faults_quarantine_bad_gpus_lose_nodes_and_still_lose_no_task() -> None:
    f = run(nodes=20, gpus_per_node=4, sessions=4, tasks=3000, faults=0.1, arrival_seconds=20)
    assert f["invariants_hold"], f["violations"]
    assert sum(f["outcomes"].values()) == 3000
    assert f["gpus_quarantined"] >= 1
    assert f["nodes_lost"] == 2


def test_the_same_seed_gives_the_same_run() -> None:
    a = run(nodes=4, gpus_per_node=2, sessions=2, tasks=300, faults=0.05, seed=3, arrival_seconds=3)
    b = run(nodes=4, gpus_per_node=2, sessions=2, tasks=300, faults=0.05, seed=3, arrival_seconds=3)
    for key in ("routing_decisions", "outcomes", "gpus_quarantined", "simulated_seconds"):
        assert a[key] == b[key]
