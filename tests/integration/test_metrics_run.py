"""/metrics during a run with a faulty simulated GPU: the GPU shows quarantined, retries and
moves are counted, and the backlog drains to zero."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.base.retry import RetryPolicy
from corral.client import Client
from corral.local import LocalCluster
from tests.conftest import running_cluster

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=3, schedulers=2, faulty=["node-1:0"])


def scrape(cluster: LocalCluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every replica's samples: counters (and `corral_leader`) summed over replicas, other
    gauges from any (they agree)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for replica in Client(cluster.settings).status()["schedulers"]:
        with urllib.request.urlopen(f"{replica['address']}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                summed = family.type == "counter" or s.name == "corral_leader"
                out[key] = out.get(key, 0.0) + s.value if summed else s.value
    return out


def test_metrics_show_the_quarantine_the_retries_and_the_backlog_draining(cluster: LocalCluster) -> None:
    client = Client(cluster.settings)
    handles = client.map("corral.sleep", [{"seconds": 0.02}] * 300)
    failing = client.map("corral.fail", [{"message": "bad input"}] * 3,
                         retry=RetryPolicy(local=1, hosts=1))
    backlog = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = scrape(cluster)
        backlog.append(got.get(("corral_session_backlog", (("session", "default"),)), 0.0))
        if backlog[-1] == 0 and got.get(("corral_tasks", (("state", "SUCCEEDED"),)), 0) >= 300:
            break
        time.sleep(0.3)
    client.wait(handles + failing, timeout=60)
    got = scrape(cluster)
    assert max(backlog) > 0 and backlog[-1] == 0, backlog
    assert got[("corral_gpu_health", (("gpu", "0"), ("node", "node-1"), ("state", "quarantined")))] == 1
    for gpu in ("1", "2"):  # bad tasks quarantine nothing
        assert got[("corral_gpu_health", (("gpu", gpu), ("node", "node-1"), ("state", "quarantined")))] == 0
    assert got[("corral_quarantines_total", ())] == 1
    assert got[("corral_reassignments_total", ())] >= 1  # tasks moved off the faulty GPU
    assert got[("corral_retries_total", (("kind", "local"),))] >= 1  # corral.fail retried in place
    assert got[("corral_tasks_failed_total", ())] == 3
    assert got[("corral_leader", ())] == 1  # summed over replicas: exactly one leads
    client.close()


def test_the_leader_times_its_etcd_commits_and_lease_refreshes(cluster: LocalCluster) -> None:
    client = Client(cluster.settings)
    client.wait(client.map("corral.echo", [{"i": i} for i in range(20)]), timeout=60)
    leader = client.status()["leader"]["id"]
    address = next(r["address"] for r in client.status()["schedulers"] if r["id"] == leader)
    client.close()
    with urllib.request.urlopen(f"{address}/metrics", timeout=10) as response:
        got = {s.name: s.value for family in text_string_to_metric_families(response.read().decode())
               for s in family.samples if not s.labels}
    assert got["corral_etcd_commit_seconds_count"] > 0  # at least the 20 records
    assert got["corral_lease_refresh_seconds_count"] > 0
