"""M5 with real processes: a node killed or frozen past its lease loses nothing."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from corral.base.etcd import get_json
from corral.client import Client
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS = 120  # enough that node-2 holds queued and running work when it dies


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=2, gpus=2, schedulers=1)




def node_state(client: Client, name: str) -> str:
    return (get_json(client.etcd, client.keys.node_health(name)) or {}).get("state", "")


def succeeded_count(client: Client, handles: list) -> int:
    return sum(1 for h in handles if h.state() == "SUCCEEDED")


def rerouted_starts(records: dict) -> list[float]:
    """Start times of attempts that replaced a superseded one."""
    starts = []
    for r in records.values():
        for before, after in zip(r["attempts"], r["attempts"][1:], strict=False):
            if before["state"] == "SUPERSEDED" and after["started"]:
                starts.append(after["started"])
    return starts


def assert_exactly_one_outcome(records: dict, n: int) -> None:
    assert Counter(r["state"] for r in records.values()) == {"SUCCEEDED": n}
    for r in records.values():
        assert [a["state"] for a in r["attempts"]].count("SUCCEEDED") == 1


def test_killing_a_node_reroutes_its_work_within_one_lease(
    cluster: LocalCluster, client: Client
) -> None:
    ttl = cluster.settings.node_ttl
    handles = client.map("corral.sleep", [{"seconds": 0.5}] * TASKS)
    wait_until(lambda: succeeded_count(client, handles[:40]) >= 20, 60, "work to flow on both nodes")
    killed_at = time.time()
    os.killpg(cluster.proc("node-2").pid, signal.SIGKILL)
    records = client.wait(handles, timeout=240)
    assert_exactly_one_outcome(records, TASKS)
    starts = rerouted_starts(records)
    assert starts, "no attempt was re-routed"
    delay = min(starts) - killed_at
    print(f"\nnode kill -> first re-routed start: {delay:.2f} s (lease TTL {ttl:.0f} s); "
          f"{len(starts)} task(s) re-routed")
    assert delay <= ttl + 1.0
    assert node_state(client, "node-2") == "lost"

    cluster.start_node("node-2")
    wait_until(lambda: node_state(client, "node-2") == "rejoining", 30, "node-2 registering again")
    rejoined = time.monotonic()
    wait_until(lambda: node_state(client, "node-2") == "up", 30, "node-2 re-admitted")
    waited = time.monotonic() - rejoined
    print(f"node-2 re-admitted after {waited:.1f} s (stabilization window "
          f"{cluster.settings.node_stable:.0f} s)")
    assert waited >= cluster.settings.node_stable - 1.0
    probes = client.wait(client.map("corral.probe", [None] * 16), timeout=60)
    assert any(client.result(r)["node"] == "node-2" for r in probes.values())


def test_a_frozen_node_thawed_after_rerouting_records_no_second_outcome(
    cluster: LocalCluster, client: Client
) -> None:
    wait_until(lambda: node_state(client, "node-2") == "up", 30, "node-2 up")
    handles = client.map("corral.sleep", [{"seconds": 0.5}] * 100)
    wait_until(lambda: succeeded_count(client, handles[:30]) >= 10, 60, "work to flow")
    group = cluster.proc("node-2").pid
    os.killpg(group, signal.SIGSTOP)
    try:
        wait_until(lambda: node_state(client, "node-2") == "lost", 15, "node-2 declared lost")
        wait_until(lambda: any(r["attempts"] and r["attempts"][-1]["node"] == "node-1"
                               and any(a["state"] == "SUPERSEDED" for a in r["attempts"])
                               for r in (client.task(h.id) for h in handles)), 15, "re-routing")
    finally:
        os.killpg(group, signal.SIGCONT)
    records = client.wait(handles, timeout=240)
    assert_exactly_one_outcome(records, 100)
    superseded = [a for r in records.values() for a in r["attempts"] if a["state"] == "SUPERSEDED"]
    assert superseded and all(a["node"] == "node-2" for a in superseded)
    # The thawed workers finish or skip their stale attempts; nothing they report is recorded.
    time.sleep(2)
    after = client.wait(handles, timeout=10)
    assert after == records or all(after[k]["attempts"] == records[k]["attempts"] for k in after)
