"""Redis with Sentinel: the primary SIGKILLed under load, a replica promoted, and every
process (schedulers, workers, clients) following it without a restart or a new leader."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest

from corral.client import Client
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3, redis_ha=True, flower=True)


def test_the_broker_url_names_the_sentinels(cluster: LocalCluster) -> None:
    assert cluster.settings.broker.startswith("sentinel://")


def flower(cluster: LocalCluster, path: str) -> dict:
    """One of Flower's API pages, with the password `corral up` made for it."""
    auth = base64.b64encode(cluster.info["flower_user"].encode()).decode()
    request = urllib.request.Request(cluster.info["flower"] + path,
                                     headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def test_flower_finds_the_primary_through_the_sentinels_and_shows_every_gpu_worker(
        cluster: LocalCluster) -> None:
    workers = {f"gpu{i}@node-1" for i in range(4)}
    wait_until(lambda: workers <= set(flower(cluster, "/api/workers?refresh=1")), 60,
               "Flower to list every GPU worker")
    queues = {q["name"] for q in flower(cluster, "/api/queues/length")["active_queues"]}
    assert {f"corral.gpu.node-1.{i}" for i in range(4)} <= queues


def test_a_primary_killed_under_load_fails_over_and_every_task_runs_once(
        cluster: LocalCluster, client: Client) -> None:
    leader = client.status()["leader"]["id"]
    handles = client.map("corral.sleep", [{"seconds": 0.02, "i": i} for i in range(1000)])
    time.sleep(3.0)
    killed = time.time()
    cluster.kill("redis", signal.SIGKILL)
    records = client.wait(handles, timeout=300)
    bad = [h.id for h in handles if records[h.id]["state"] != "SUCCEEDED"
           or [a["state"] for a in records[h.id]["attempts"]].count("SUCCEEDED") != 1]
    assert bad == []
    resumed = min(a["started"] for r in records.values() for a in r["attempts"]
                  if a.get("started") and a["started"] > killed)
    print(f"the next attempt started {resumed - killed:.2f} s after the primary was killed")
    assert client.status()["leader"]["id"] == leader
    assert client.submit("corral.echo", "after").result(timeout=30) == "after"
