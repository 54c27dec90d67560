"""M7 and M8 with real workers: fixed workers, share ratios, hand-over, failover."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from corral.client import Client
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=2, gpus=4, schedulers=3)




def allocation(client: Client) -> Counter:
    return Counter(p["session"] for p in client.plan().values() if p.get("session"))


def test_backlogs_share_gpus_by_ratio_and_freed_gpus_move_within_the_grace(
    cluster: LocalCluster, client: Client
) -> None:
    a = client.open_session("A", fixed_workers=1, share_ratio=1)
    b = client.open_session("B", fixed_workers=1, share_ratio=3)
    t0 = time.monotonic()
    a_tasks = a.map("corral.sleep", [{"seconds": 0.5}] * 120)
    b_tasks = b.map("corral.sleep", [{"seconds": 0.5}] * 60)
    wait_until(lambda: abs(allocation(client)["A"] - 2) <= 1 and abs(allocation(client)["B"] - 6) <= 1,
               5, "A=2, B=6 (+-1)")
    settled = time.monotonic() - t0
    print(f"\nallocation settled at {dict(allocation(client))} after {settled:.2f} s")
    client.wait(b_tasks, timeout=120)
    b_done = time.time()
    wait_until(lambda: allocation(client)["A"] >= 7, cluster.settings.idle_grace + 2,
               "A taking B's freed GPUs")
    moved = time.time() - b_done
    print(f"A holds {allocation(client)['A']} GPUs {moved:.2f} s after B's backlog ended "
          f"(idle grace {cluster.settings.idle_grace:.1f} s)")
    assert moved <= cluster.settings.idle_grace + 0.5
    records = client.wait(a_tasks, timeout=180)
    assert all(r["state"] == "SUCCEEDED" for r in records.values())


def test_a_new_session_gets_its_fixed_workers_within_one_task_without_killing_any(
    cluster: LocalCluster, client: Client
) -> None:
    a = client.open_session("A", fixed_workers=1, share_ratio=1)
    b = client.open_session("B", fixed_workers=1, share_ratio=3)
    busy = a.map("corral.sleep", [{"seconds": 1.0}] * 40) + b.map("corral.sleep", [{"seconds": 1.0}] * 80)
    wait_until(lambda: sum(allocation(client).values()) == 8 and "C" not in allocation(client), 10,
               "A and B holding every GPU")
    time.sleep(1.5)  # every GPU is running a one-second task
    opened = time.time()
    c = client.open_session("C", fixed_workers=2)
    c_tasks = c.map("corral.echo", [{"c": i} for i in range(2)])
    records = client.wait(c_tasks, timeout=30)
    starts = sorted(r["attempts"][-1]["started"] for r in records.values())
    print(f"\nC's tasks started {starts[0] - opened:.2f} s and {starts[1] - opened:.2f} s after it opened")
    assert allocation(client)["C"] == 2
    assert starts[1] - opened <= 1.0 + 0.5  # one task duration plus a tick
    done = client.wait(busy, timeout=240)
    assert all(r["state"] == "SUCCEEDED" for r in done.values())
    for r in done.values():
        for attempt in r["attempts"][:-1]:
            assert attempt["state"] == "SUPERSEDED" and attempt["started"] is None  # never killed
    client.close_session("C")


def test_a_failover_keeps_the_plan_and_every_fixed_worker(cluster: LocalCluster, client: Client) -> None:
    for name in ("A", "B"):
        client.close_session(name)
    client.open_session("F1", fixed_workers=3)
    client.open_session("F2", fixed_workers=2)
    wait_until(lambda: allocation(client)["F1"] == 3 and allocation(client)["F2"] == 2, 10,
               "fixed workers planned")
    time.sleep(cluster.settings.idle_grace + 0.5)  # let surplus from earlier tests go
    before = {k: v["session"] for k, v in client.plan().items()}
    leader = client.status()["leader"]["id"]
    os.kill(cluster.proc(leader).pid, signal.SIGKILL)
    lowest = {"F1": 3, "F2": 2}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = allocation(client)
        lowest = {k: min(v, now[k]) for k, v in lowest.items()}
        new = client.status()["leader"]["id"]
        if new and new != leader:
            break
        time.sleep(0.05)
    assert new != leader
    time.sleep(1.0)  # the new leader has reconciled and run its allocator
    after = {k: v["session"] for k, v in client.plan().items()}
    assert after == before
    assert lowest == {"F1": 3, "F2": 2}
    cluster.start_scheduler(leader)
