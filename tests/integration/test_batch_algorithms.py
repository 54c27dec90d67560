"""Batch-capable algorithms with real workers: many inputs per call, and a bad input that
fails only its own task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.base.config import Settings
from corral.base.etcd import prefix_json
from corral.client import Client, Retry
from corral.local import LocalCluster
from tests.conftest import running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=2, schedulers=1,
                               settings=Settings(cluster="batch"))


def test_a_backlog_runs_many_inputs_per_call(client: Client) -> None:
    handles = client.map("corral.batch", [{"i": i} for i in range(200)])
    results = client.results(handles, timeout=60)
    assert [r["echo"] for r in results] == [{"i": i} for i in range(200)]
    assert max(r["batch"] for r in results) > 8


def test_a_bad_input_in_a_batch_fails_alone_and_quarantines_nothing(client: Client) -> None:
    args: list[dict] = [{"i": i} for i in range(64)]
    args[17] = {"fail": "model error: the input has no text"}
    handles = client.map("corral.batch", args, retry=Retry(local=1, hosts=1))
    records = client.wait(handles, timeout=60)
    states = {h.id: records[h.id]["state"] for h in handles}
    bad = handles[17].id
    assert states.pop(bad) == "FAILED" and set(states.values()) == {"SUCCEEDED"}
    assert "model error: the input has no text" in records[bad]["error"]["message"]
    health = prefix_json(client.etcd, client.keys.gpu_health(""))
    assert not [k for k, h in health.items() if h.get("state") == "quarantined"]
