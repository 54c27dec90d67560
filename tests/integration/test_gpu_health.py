"""M4 with real workers: a cluster GPU is quarantined, bad tasks quarantine nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.base.etcd import get_json
from corral.client import Client, Retry
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=1,
                               faulty=["node-1:2"])




def gpu_health(client: Client, node: str, index: int) -> dict:
    return get_json(client.etcd, client.keys.gpu_health(node, index)) or {}


def test_a_faulty_gpu_is_quarantined_and_every_task_still_succeeds(client: Client) -> None:
    handles = client.map("corral.echo", [{"i": i} for i in range(300)])
    records = client.wait(handles, timeout=180)
    # Batched work (M11) goes to the GPUs that are free: a slow faulty worker may see the
    # backlog drained before its third task. Quarantine needs that evidence, so keep work
    # coming until it has it.
    for wave in range(5):
        if gpu_health(client, "node-1", 2).get("state") == "quarantined":
            break
        more = client.map("corral.echo", [{"i": 300 + 20 * wave + i} for i in range(20)])
        records |= client.wait(more, timeout=60)
        handles += more
    assert all(r["state"] == "SUCCEEDED" for r in records.values())
    for i, h in enumerate(handles):
        assert client.result(records[h.id]) == {"i": i}
    health = gpu_health(client, "node-1", 2)
    assert health["state"] == "quarantined"
    on_bad = [a for r in records.values() for a in r["attempts"] if (a["node"], a["gpu"]) == ("node-1", 2)]
    failures = [a for a in on_bad if a["state"] == "FAILED"]
    assert 2 <= len(failures) <= 3
    assert all(a["error"]["type"] == "SimulatedGpuFault" for a in failures)
    assert all(a["dispatched"] <= health["since"] for a in on_bad)
    for index in (0, 1, 3):
        assert gpu_health(client, "node-1", index).get("state", "healthy") != "quarantined"
    wait_until(lambda: client.status()["nodes"][0]["gpus"][2]["state"] == "quarantined", 5,
               "the status summary to show the quarantine")


def test_a_stream_of_failing_tasks_quarantines_no_healthy_gpu(client: Client) -> None:
    handles = client.map("corral.fail", [{"message": f"bad task {i}"} for i in range(12)],
                         retry=Retry(local=1, hosts=3, backoff=0.05))
    records = client.wait(handles, timeout=120)
    assert all(r["state"] == "FAILED" for r in records.values())
    for index in (0, 1, 3):
        assert gpu_health(client, "node-1", index).get("state") != "quarantined"


def test_an_operator_quarantines_and_releases_a_gpu(cluster: LocalCluster, client: Client) -> None:
    assert client.admin("gpu.quarantine", "node-1", 3)["state"] == "quarantined"
    handles = client.map("corral.probe", [None] * 12)
    records = client.wait(handles, timeout=60)
    assert all(r["attempts"][-1]["gpu"] != 3 for r in records.values())
    assert client.admin("gpu.release", "node-1", 3)["state"] == "healthy"
    wait_until(lambda: any(
        client.result(r)["gpu"] == 3
        for r in client.wait([client.submit("corral.probe") for _ in range(6)], timeout=60).values()
    ), 60, "GPU 3 serving again after release")


def test_an_nvml_health_signal_quarantines_at_once(cluster: LocalCluster, client: Client) -> None:
    cluster.fault_file("node-1").write_text(json.dumps({"1": "Xid 79: GPU has fallen off the bus"}))
    wait_until(lambda: gpu_health(client, "node-1", 1).get("state") == "quarantined", 10,
               "quarantine after an NVML signal")
    assert "Xid 79" in gpu_health(client, "node-1", 1)["reason"]


def test_a_worker_killed_mid_task_is_a_failed_attempt_and_the_task_succeeds(
    cluster: LocalCluster, client: Client
) -> None:
    h = client.submit("corral.sleep", {"seconds": 3}, retry=Retry(local=2, hosts=2, backoff=0.1))
    wait_until(lambda: h.state() == "RUNNING", 30, "the task to start")
    pid = None
    for _ in range(50):
        record = client.task(h.id)
        started = [e for e in record["events"] if e["event"] == "started"]
        if started:
            break
        time.sleep(0.1)
    # The attempt's worker pid is in its started event; kill that pool process.
    pid = _pid_of_running_attempt(cluster, record)
    os.kill(pid, signal.SIGKILL)
    assert h.result(timeout=60) == {"slept": 3.0}
    attempts = client.task(h.id)["attempts"]
    assert attempts[0]["state"] == "FAILED"
    assert attempts[0]["error"]["type"] == "WorkerLost"
    assert attempts[-1]["state"] == "SUCCEEDED"


def _pid_of_running_attempt(cluster: LocalCluster, record: dict) -> int:
    attempt = record["attempts"][-1]
    needle = f"gpu{attempt['gpu']}@{attempt['node']}".encode()
    main = None
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if needle in fh.read():
                        with open(f"/proc/{entry}/stat") as st:
                            ppid = int(st.read().split(")")[-1].split()[1])
                        if ppid == cluster.proc(attempt["node"]).pid:
                            main = int(entry)
            except OSError:
                continue
    assert main is not None
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    assert children, "the Celery worker has no pool process"
    return int(children[0])
