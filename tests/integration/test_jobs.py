"""Command jobs with real workers: GPUs reserved together, output kept, checkpoints that
survive a lost node, an exit 85 and a drain, and a cancel that kills the whole tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.base.config import Settings
from corral.base.process import alive
from corral.client import Client, Retry
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until
from tests.integration.test_gpu_health import _pid_of_running_attempt

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).parent / "jobs"
COUNTER = [sys.executable, str(HERE / "counter.py")]
GRACE = 4.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    jobs = tmp_path_factory.mktemp("jobs")
    yield from running_cluster(tmp_path_factory, nodes=2, gpus=4, schedulers=1,
                               settings=Settings(cluster="jobs").with_(move_grace=GRACE, job_dir=str(jobs)))


def record(client: Client, task_id: str) -> dict:
    return client.task(task_id) or {}


def output(client: Client, task_id: str) -> str:
    try:
        return "".join(text for _, text in client.logs(task_id))
    except KeyError:  # not recorded yet
        return ""


def by_attempt(client: Client, task_id: str) -> list[str]:
    out: dict[str, str] = {}
    for attempt_id, text in client.logs(task_id):
        out[attempt_id] = out.get(attempt_id, "") + text
    return [out.get(a["id"], "") for a in record(client, task_id)["attempts"]]


def counts(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("count ")]


def running_on(client: Client, task_id: str) -> str | None:
    r = record(client, task_id)
    return r["attempts"][-1]["node"] if r.get("state") in ("QUEUED", "RUNNING") else None


def test_a_two_gpu_job_sees_exactly_its_gpus_and_nothing_else_runs_on_them(client: Client) -> None:
    job = client.job([sys.executable, "-c", "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES']);"
                      " time.sleep(3)"], gpus=2)
    wait_until(lambda: record(client, job.id).get("state") == "RUNNING", 30, "the job to start")
    small = client.map("corral.sleep", [{"seconds": 0.2}] * 40)
    assert job.result(timeout=60)["exit_code"] == 0
    client.wait(small, timeout=120)
    attempt = record(client, job.id)["attempts"][-1]
    assert len(attempt["gang"]) == 2
    assert output(client, job.id).splitlines()[1] == ",".join(str(g) for g in attempt["gang"])
    mine = {(attempt["node"], g) for g in attempt["gang"]}
    for h in small:
        for a in record(client, h.id)["attempts"]:
            if (a["node"], a["gpu"]) in mine and a["started"]:
                assert a["ended"] <= attempt["started"] or a["started"] >= attempt["ended"], (a, attempt)


def test_a_four_gpu_job_behind_a_stream_of_small_tasks_starts_within_one_task(client: Client) -> None:
    stream = client.map("corral.sleep", [{"seconds": 1.0}] * 120, session="stream")
    wait_until(lambda: sum(h.state() == "SUCCEEDED" for h in stream[:20]) >= 8, 60, "the stream to flow")
    job = client.job([sys.executable, "-c", "print('big')"], gpus=4, session="stream")
    asked = time.time()
    assert job.result(timeout=60)["exit_code"] == 0
    started = record(client, job.id)["attempts"][-1]["started"]
    stream_left = sum(h.state() != "SUCCEEDED" for h in stream)
    client.wait(stream, timeout=180)
    assert started - asked < 1.0 + 1.5  # one task's length, and the scheduler's own latency
    assert stream_left > 20  # the stream was far from over


def test_a_job_that_exits_85_runs_again_from_its_checkpoint_and_every_attempts_output_is_kept(
        client: Client) -> None:
    job = client.job([*COUNTER, "20", "0.02", "12"], retry=Retry(local=0, hosts=0))
    assert job.result(timeout=60)["exit_code"] == 0
    r = record(client, job.id)
    assert [a["state"] for a in r["attempts"]] == ["SUPERSEDED", "SUCCEEDED"]
    assert r["attempts"][0]["error"]["type"] == "Yielded"
    first, second = by_attempt(client, job.id)
    assert "resumed from 0" in first and "count 12" in first and "count 13" not in first
    assert "resumed from 12" in second and "done at 20" in second


def test_logs_follow_shows_output_while_the_job_runs(cluster: LocalCluster, client: Client) -> None:
    job = client.job([sys.executable, "-u", "-c",
                      "import time\nfor i in range(40):\n print('line', i, flush=True); time.sleep(0.1)"])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
           "CORRAL_ETCD": cluster.settings.etcd, "CORRAL_BROKER": cluster.settings.broker,
           "CORRAL_CLUSTER": cluster.settings.cluster}
    follow = subprocess.Popen([sys.executable, "-m", "corral.cli", "job", "logs", job.id, "--follow"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        line = follow.stdout.readline()
        while not line.startswith("line"):
            line = follow.stdout.readline()
        assert record(client, job.id)["state"] in ("QUEUED", "RUNNING")  # read while it runs
        rest, _ = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert "line 39" in rest and follow.returncode == 0


def test_cancelling_a_running_job_kills_its_whole_process_tree_within_two_seconds(client: Client) -> None:
    job = client.job([sys.executable, str(HERE / "tree.py")])
    wait_until(lambda: "pids" in output(client, job.id), 30, "the job to print its pids")
    pids = [int(p) for p in output(client, job.id).split("pids", 1)[1].split("\n", 1)[0].split()]
    assert len(pids) == 3 and all(alive(p) for p in pids)
    asked = time.monotonic()
    client.cancel(job.id)
    wait_until(lambda: not any(alive(p) for p in pids), 2.0, "the job's tree to die")
    took = time.monotonic() - asked
    wait_until(lambda: record(client, job.id).get("state") == "CANCELLED", 5, "CANCELLED")
    assert took < 2.0


def test_draining_a_node_moves_a_running_job_from_its_checkpoint(client: Client) -> None:
    job = client.job([*COUNTER, "200", "0.05"])
    wait_until(lambda: "count 12" in output(client, job.id), 30, "the job to count")
    node = running_on(client, job.id)
    assert node is not None
    drained = time.time()
    client.admin("node.drain", node)
    try:
        assert job.result(timeout=60)["exit_code"] == 0
    finally:
        client.admin("node.undrain", node)
    r = record(client, job.id)
    first, second = r["attempts"][0], r["attempts"][-1]
    assert first["error"]["type"] == "Yielded" and second["node"] != node
    assert second["started"] - drained < GRACE + 5
    before, after = by_attempt(client, job.id)[0], by_attempt(client, job.id)[-1]
    resumed = int(after.split("resumed from ")[1].split()[0])
    asked_at = max(counts(before.split("asked to move")[0]))
    assert resumed >= asked_at >= 12  # the checkpoint it made when asked, not an older one
    assert max(counts(before)) - resumed <= 10  # lost: only the steps since that checkpoint


def test_draining_a_node_moves_a_running_checkpointing_task(client: Client) -> None:
    h = client.submit("corral.count", {"to": 60, "step_seconds": 0.05})
    wait_until(lambda: running_on(client, h.id) is not None, 30, "the task to start")
    time.sleep(0.5)
    node = running_on(client, h.id)
    client.admin("node.drain", node)
    try:
        result = h.result(timeout=60)
    finally:
        client.admin("node.undrain", node)
    r = record(client, h.id)
    assert r["attempts"][0]["error"]["type"] == "Yielded" and r["attempts"][-1]["node"] != node
    assert result["count"] == 60 and result["resumed_from"] > 0


def test_cancelling_a_running_task_ends_its_process_at_the_next_heartbeat(
        cluster: LocalCluster, client: Client) -> None:
    h = client.submit("corral.sleep", {"seconds": 120}, session="cancel")
    wait_until(lambda: running_on(client, h.id) is not None, 30, "the task to be placed")
    time.sleep(0.5)  # started
    pid = _pid_of_running_attempt(cluster, record(client, h.id))
    client.cancel(h.id)
    wait_until(lambda: record(client, h.id).get("state") == "CANCELLED", 5, "CANCELLED")
    wait_until(lambda: not alive(pid), cluster.settings.heartbeat + 3, "the cancelled attempt to end")
    assert client.submit("corral.echo", {"x": 1}, session="cancel").result(timeout=30) == {"x": 1}


def test_a_job_killed_with_its_node_resumes_on_another_node_from_its_checkpoint(
        cluster: LocalCluster, client: Client) -> None:
    job = client.job([*COUNTER, "60", "0.05"], gpus=2)
    wait_until(lambda: "checkpoint saved" in (text := output(client, job.id)) and "count 11" in text, 30,
               "a first checkpoint")
    node = running_on(client, job.id)
    assert node is not None
    pid = int(output(client, job.id).split("(pid ")[1].split(")")[0])
    cluster.kill(node)
    wait_until(lambda: not alive(pid), 5, "the job to die with its node")
    assert job.result(timeout=90)["exit_code"] == 0
    r = record(client, job.id)
    assert r["attempts"][0]["state"] == "SUPERSEDED" and r["attempts"][-1]["node"] != node
    resumed = int(output(client, job.id).split("resumed from ")[-1].split()[0])
    assert resumed >= 5
