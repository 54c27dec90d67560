"""M1 retry with real workers: local retries, another host, then FAILED with history."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.client import Client, Retry, TaskFailed
from corral.local import LocalCluster
from tests.conftest import running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=2, gpus=2, schedulers=1)




def test_a_task_that_fails_twice_then_succeeds_stays_on_its_gpu(client: Client) -> None:
    h = client.submit("corral.fail", {"message": "flaky", "first": 2},
                      retry=Retry(local=2, hosts=3, backoff=0.1))
    assert h.result(timeout=60)["number"] == 3
    attempts = client.task(h.id)["attempts"]
    assert [a["state"] for a in attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert len({(a["node"], a["gpu"]) for a in attempts}) == 1
    assert attempts[0]["error"]["type"] == "AlgorithmFailed"


def test_a_task_that_always_fails_on_one_host_succeeds_on_another(client: Client) -> None:
    # Idle GPUs are filled in order, so the first attempt lands on node-1.
    h = client.submit("corral.fail", {"message": "bad host", "nodes": ["node-1"]},
                      retry=Retry(local=1, hosts=3, backoff=0.1))
    assert h.result(timeout=60)["node"] == "node-2"
    attempts = client.task(h.id)["attempts"]
    assert [(a["node"], a["state"]) for a in attempts] == [
        ("node-1", "FAILED"), ("node-1", "FAILED"), ("node-2", "SUCCEEDED")]


def test_a_task_that_fails_everywhere_ends_failed_with_its_whole_history(client: Client) -> None:
    h = client.submit("corral.fail", {"message": "always"}, retry=Retry(local=1, hosts=2, backoff=0.1))
    with pytest.raises(TaskFailed) as failed:
        h.result(timeout=60)
    record = failed.value.record
    assert record["state"] == "FAILED"
    assert "budget" in record["reason"]
    attempts = record["attempts"]
    assert len(attempts) == (1 + 1) * 2
    assert {a["node"] for a in attempts} == {"node-1", "node-2"}
    for a in attempts:
        assert a["state"] == "FAILED"
        assert a["started"] and a["ended"] and a["ended"] >= a["started"]
        assert a["error"]["type"] == "AlgorithmFailed"
        assert a["error"]["message"] == "always"
        assert "Traceback" in a["error"]["traceback"]
