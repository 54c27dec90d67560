"""The cluster spine end to end: real etcd, Redis, schedulers and per-GPU Celery workers."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from corral.base.etcd import get_json
from corral.base.keys import gpu_queue_lists
from corral.client import Client, Retry, TaskFailed
from corral.local import LocalCluster
from tests.conftest import wait_until

pytestmark = pytest.mark.integration


def test_a_probe_runs_where_it_was_routed(client: Client) -> None:
    handles = [client.submit("corral.probe") for _ in range(20)]
    records = client.wait(handles, timeout=60)
    for h in handles:
        record = records[h.id]
        assert record["state"] == "SUCCEEDED"
        attempt = record["attempts"][-1]
        probe = client.result(record)
        assert probe["cuda_visible_devices"] == str(attempt["gpu"])
        assert probe["gpu"] == attempt["gpu"]
        assert probe["node"] == attempt["node"]
        assert probe["simulated"] is True


def test_thousand_tasks_succeed_once_each_and_gpu_queues_stay_shallow(
    cluster: LocalCluster, client: Client
) -> None:
    r = redis.Redis.from_url(cluster.settings.broker)
    queues = [gpu_queue_lists("node-1", i) for i in range(4)]
    deepest = Counter()
    samples = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal samples
        while not done.is_set():
            for lists in queues:
                with r.pipeline(transaction=True) as pipe:  # one atomic look at every priority list
                    for name in lists:
                        pipe.llen(name)
                    depth = sum(pipe.execute())
                deepest[lists[0]] = max(deepest[lists[0]], depth)
            samples += 1
            time.sleep(0.001)  # 1,000 echo tasks may all end within half a second

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        handles = client.map("corral.echo", [{"i": i} for i in range(1000)])
        records = client.wait(handles, timeout=240)
    finally:
        done.set()
        sampler.join()

    assert Counter(r["state"] for r in records.values()) == {"SUCCEEDED": 1000}
    gpus_used = set()
    for i, h in enumerate(handles):
        record = records[h.id]
        assert len(record["attempts"]) == 1
        assert record["attempts"][0]["state"] == "SUCCEEDED"
        gpus_used.add((record["attempts"][0]["node"], record["attempts"][0]["gpu"]))
        assert client.result(record) == {"i": i}
    assert gpus_used == {("node-1", i) for i in range(4)}
    assert samples > 50
    assert 1 <= max(deepest.values()) <= 2, dict(deepest)


def test_same_task_id_twice_creates_one_task(client: Client) -> None:
    first = client.submit("corral.echo", {"n": 1}, task_id="idem-1")
    second = client.submit("corral.echo", {"n": 2}, task_id="idem-1")
    assert first.result(timeout=30) == {"n": 1}
    time.sleep(0.5)  # let the duplicate be consumed too
    assert second.result(timeout=30) == {"n": 1}
    record = client.task("idem-1")
    assert record is not None
    assert len(record["attempts"]) == 1
    assert [e["event"] for e in record["events"]].count("submitted") == 1


def test_a_result_comes_back_through_the_session_api(client: Client) -> None:
    with client.session("spine", fixed_workers=1, share_ratio=2.0) as session:
        handle = session.submit("corral.echo", {"x": 1})
        assert handle.result(timeout=30) == {"x": 1}
        assert handle.state() == "SUCCEEDED"
    assert client.task(handle.id)["session"] == "spine"


def test_status_shows_leader_schedulers_node_and_gpus(client: Client) -> None:
    st = client.status()
    assert [s["role"] for s in st["schedulers"]].count("leader") == 1
    assert st["leader"]["id"] in {s["id"] for s in st["schedulers"]}
    assert len(st["schedulers"]) == 3
    (node,) = st["nodes"]
    assert node["name"] == "node-1"
    assert [g["index"] for g in node["gpus"]] == [0, 1, 2, 3]
    assert set(st["tasks"]) >= {"pending", "queued", "running", "succeeded", "failed"}


def test_a_crashed_gpu_worker_is_restarted_by_its_node_agent(
    cluster: LocalCluster, client: Client
) -> None:
    import os
    import signal

    def worker_pid() -> int | None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read().split(b"\0")
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().split(")")[-1].split()[1])
            except OSError:
                continue
            if b"gpu1@node-1" in cmd and ppid == cluster.proc("node-1").pid:
                return int(entry)
        return None

    old = worker_pid()
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    new = None
    while time.monotonic() < deadline:
        new = worker_pid()
        if new not in (None, old):
            break
        time.sleep(0.1)
    assert new not in (None, old)
    # Consuming again (its registration says so), then more work than the other GPUs hold:
    # some of it runs on the restarted worker.
    wait_until(lambda: 1 in (get_json(client.etcd, client.keys.node("node-1")) or {}).get("ready", []),
               60, "the restarted worker to consume")
    handles = client.map("corral.sleep", [{"seconds": 0.2}] * 16)
    records = client.wait(handles, timeout=60)
    on_gpu1 = [r for r in records.values() if r["attempts"][-1]["gpu"] == 1]
    assert on_gpu1 and all(r["state"] == "SUCCEEDED" for r in on_gpu1)


def test_results_of_many_tasks_come_in_order_in_one_call(client: Client) -> None:
    handles = client.map("corral.echo", [{"n": i} for i in range(50)])
    assert client.results(handles, timeout=60) == [{"n": i} for i in range(50)]


def test_results_raise_for_the_first_task_that_failed(client: Client) -> None:
    good = client.submit("corral.echo", 1)
    bad = client.submit("corral.fail", {"message": "no"}, retry=Retry(local=0, hosts=1))
    with pytest.raises(TaskFailed, match="budget") as failed:
        client.results([good, bad], timeout=60)
    assert failed.value.record["id"] == bad.id


def test_large_args_wait_in_the_blob_store_and_reach_the_algorithm_whole(client: Client) -> None:
    big = {"blob": "x" * 20_000, "n": list(range(100))}
    h = client.submit("corral.echo", big)
    assert h.result(timeout=60) == big
    record = client.task(h.id)
    assert set(record["args"]) == {"$blob"}  # the record in etcd holds a reference only
    assert len(str(record)) < 5_000
