"""M2 with real workers: checkpoints saved, asked for, and resumed from after a crash."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from corral.base.config import Settings
from corral.client import Client, Retry
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until
from tests.integration.test_gpu_health import _pid_of_running_attempt

pytestmark = pytest.mark.integration

EVERY = 2.0  # the leader asks running tasks for a checkpoint this often


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=2, schedulers=1,
                               settings=Settings(cluster="ckpt").with_(checkpoint_every=EVERY))


def events(client: Client, task_id: str, kind: str) -> list[dict]:
    return [e for e in (client.task(task_id) or {}).get("events", []) if e["event"] == kind]


def test_a_task_whose_worker_is_killed_resumes_from_its_latest_checkpoint(
        cluster: LocalCluster, client: Client) -> None:
    h = client.submit("corral.count", {"to": 60, "step_seconds": 0.05, "checkpoint_every": 10},
                      retry=Retry(local=2, hosts=2, backoff=0.1))
    wait_until(lambda: (client.task(h.id) or {}).get("checkpoint_ref") is not None, 30,
               "a first checkpoint")
    os.kill(_pid_of_running_attempt(cluster, client.task(h.id)), signal.SIGKILL)
    result = h.result(timeout=60)
    assert result["count"] == 60 and result["resumed_from"] >= 10
    record = client.task(h.id)
    assert record["attempts"][0]["error"]["type"] == "WorkerLost"
    assert client.checkpoint(h.id)["count"] % 10 == 0
    stored = redis.Redis.from_url(cluster.settings.broker).keys(f"corral:ckpt:checkpoint:{h.id}.*")
    assert [k.decode() for k in stored] == [record["checkpoint_ref"]]  # replaced ones are deleted


def test_an_operator_request_gets_a_checkpoint_at_the_next_step(
        cluster: LocalCluster, client: Client) -> None:
    h = client.submit("corral.count", {"to": 60, "step_seconds": 0.05})
    wait_until(lambda: events(client, h.id, "started"), 30, "the task to start")
    asked = time.time()
    client.request_checkpoint(h.id)
    wait_until(lambda: events(client, h.id, "checkpoint"), 10, "the checkpoint")
    assert events(client, h.id, "checkpoint")[0]["time"] - asked < EVERY - 0.5  # not the periodic one
    assert 0 < client.checkpoint(h.id)["count"] < 60
    assert h.result(timeout=30)["count"] == 60


def test_the_leader_asks_a_long_task_for_checkpoints_periodically(client: Client) -> None:
    h = client.submit("corral.count", {"to": 100, "step_seconds": 0.05})
    assert h.result(timeout=60) == {"count": 100, "resumed_from": 0}
    saved = events(client, h.id, "checkpoint")
    assert len(saved) >= 1  # a 5 s task, asked every 2 s


def test_corral_checkpoint_refuses_a_finished_task(cluster: LocalCluster, client: Client) -> None:
    import subprocess
    import sys

    h = client.submit("corral.echo", {"x": 1})
    h.result(timeout=30)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
           "CORRAL_ETCD": cluster.settings.etcd, "CORRAL_BROKER": cluster.settings.broker,
           "CORRAL_CLUSTER": cluster.settings.cluster}
    out = subprocess.run([sys.executable, "-m", "corral.cli", "checkpoint", h.id], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "SUCCEEDED" in out.stderr
