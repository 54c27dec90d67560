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


def test_a_task_that_spends_its_local_retries_moves_to_another_host_and_succeeds(client: Client) -> None:
    # It fails its first two attempts wherever they run (where the first lands is the
    # allocator's choice): one try and one local retry on that GPU, then another host.
    h = client.submit("corral.fail", {"message": "bad host", "first": 2},
                      retry=Retry(local=1, hosts=3, backoff=0.1))
    result = h.result(timeout=60)
    attempts = client.task(h.id)["attempts"]
    assert [a["state"] for a in attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert (attempts[0]["node"], attempts[0]["gpu"]) == (attempts[1]["node"], attempts[1]["gpu"])
    assert attempts[2]["node"] != attempts[0]["node"] == attempts[1]["node"]
    assert result["node"] == attempts[2]["node"]


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
