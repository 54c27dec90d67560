"""Fixtures of the integration tests that drive a scheduler replica by hand."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from corral.local import LocalCluster
from corral.scheduler.service import Scheduler
from tests.conftest import running_cluster, start_redis


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=1, schedulers=1)


@pytest.fixture
def replica(small: LocalCluster, tmp_path: Path) -> Iterator[tuple[Scheduler, redis.Redis]]:
    """A scheduler of a cluster of its own (its own keys in the cluster's etcd, a Redis of its
    own), driven by hand: no threads but its readers, and its loop's turn held as if the loop
    were busy, so that what they read waits in the inbox (Scheduler.take_now)."""
    proc, url = start_redis(tmp_path)
    settings = small.settings.with_(cluster=f"t{uuid.uuid4().hex[:8]}", broker=url)
    scheduler = Scheduler(settings, "replica-a")
    scheduler.mirror.start()
    scheduler._turn.acquire()
    broker = redis.Redis.from_url(url)
    try:
        yield scheduler, broker
    finally:
        scheduler.stopping.set()  # as a replica shuts down: its mirror is not started again
        scheduler._step_down("test over")
        scheduler.mirror.stop()
        scheduler.etcd.close()
        scheduler.redis.close()
        broker.close()
        proc.kill()
        proc.wait()
        # A takeover freezes the heap (scheduler/heap.py), as a leader's process should;
        # this one is pytest's, so it is thawed and the scheduler's cycles collected here.
        del scheduler
        gc.unfreeze()
        gc.collect()


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "corral-ingress" and t.is_alive()]


def next_ingress(scheduler: Scheduler) -> tuple[Any, ...]:
    while True:
        event = scheduler.inbox.get(timeout=10)
        if event[0] == "ingress":
            return event
