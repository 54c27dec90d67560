"""Broker failures lose nothing: a Redis restart, and messages the broker lost on the way.
etcd holds the truth; Redis is a transport that may lose or repeat messages, and the
scheduler repairs both."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from corral.base.keys import STATUS_QUEUE, gpu_queue_lists
from corral.base.wire import decode
from corral.client import Client
from corral.local import LocalCluster, alive
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3)


def succeeded_once(record: dict) -> bool:
    return record["state"] == "SUCCEEDED" and [a["state"] for a in record["attempts"]].count("SUCCEEDED") == 1


def lose_queued(broker: redis.Redis, node: str, gpus: int) -> set[str]:
    """The broker loses every message queued for the node's GPUs, at once; the ids of the
    tasks they carried."""
    keys = [k for index in range(gpus) for k in gpu_queue_lists(node, index)]
    with broker.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.delete(*keys)
        *queues, _ = pipe.execute()
    lost = set()
    for raw in (message for queue in queues for message in queue):
        _, body, _ = decode(raw)
        kwargs = body[1]
        lost.update(member["task_id"] for member in kwargs.get("batch") or [kwargs])
    return lost


@pytest.mark.slow
def test_a_redis_restart_under_load_loses_nothing_and_changes_no_leader(
        cluster: LocalCluster, client: Client) -> None:
    leader = client.status()["leader"]["id"]
    schedulers = {p.name: p.pid for p in cluster.procs if p.role == "scheduler"}
    handles = client.map("corral.sleep", [{"seconds": 0.02 + (i % 4) * 0.01, "i": i} for i in range(1200)])
    wait_until(lambda: client.status()["tasks"]["succeeded"] >= 300, 60, "flow")
    early = [h for h in handles[:600] if (client.task(h.id) or {}).get("state") == "SUCCEEDED"]
    time.sleep(1.0)  # these finished at least a second before the kill: the AOF has them
    cluster.kill("redis", signal.SIGKILL)
    time.sleep(1.0)
    cluster.restart("redis")
    back = time.time()
    records = client.wait(handles, timeout=300)
    assert [h.id for h in handles if not succeeded_once(records[h.id])] == []
    resumed = min(a["started"] for r in records.values() for a in r["attempts"]
                  if a.get("started") and a["started"] > back)
    print(f"flow resumed {resumed - back:.2f} s after Redis was back")
    assert resumed - back <= 5.0
    assert early and all("slept" in h.result(timeout=10) for h in early)
    assert all(alive(pid) for pid in schedulers.values())
    assert client.status()["leader"]["id"] == leader


def test_work_whose_gpu_queue_the_broker_lost_is_rerouted_and_runs_once(
        cluster: LocalCluster, client: Client) -> None:
    broker = redis.Redis.from_url(cluster.settings.broker)
    busy = [client.submit("corral.sleep", {"seconds": 2.0, "busy": i}) for i in range(4)]
    wait_until(lambda: all((client.task(h.id) or {}).get("state") == "RUNNING" for h in busy), 30,
               "every GPU busy")
    queued = [client.submit("corral.echo", {"queued": i}) for i in range(4)]
    wait_until(lambda: all((client.task(h.id) or {}).get("state") == "QUEUED" for h in queued), 30,
               "work queued behind them")
    lost = lose_queued(broker, "node-1", 4)
    print(f"\nthe broker lost {len(lost)} of {len(queued)} queued messages")
    assert lost  # (a worker may already hold the message behind its running one)
    records = client.wait(busy + queued, timeout=120)
    assert [h.id for h in busy + queued if not succeeded_once(records[h.id])] == []
    assert all(len(records[t]["attempts"]) >= 2 for t in lost)  # each came back once, then ran


def test_an_outcome_the_broker_lost_is_recovered_and_the_task_counted_once(
        cluster: LocalCluster, client: Client) -> None:
    broker = redis.Redis.from_url(cluster.settings.broker)
    h = client.submit("corral.sleep", {"seconds": 3.0, "lost": "outcome"})
    wait_until(lambda: (client.task(h.id) or {}).get("state") == "RUNNING", 30, "running")
    schedulers = [p for p in cluster.procs if p.role == "scheduler"]
    for p in schedulers:  # nobody reads the status stream for a moment
        cluster.kill(p.name, signal.SIGSTOP, group=False)
    try:
        deadline = time.monotonic() + 10
        entry = None
        while entry is None and time.monotonic() < deadline:
            for entry_id, fields in broker.xrevrange(STATUS_QUEUE, count=200):
                event = json.loads(fields[b"e"])
                if event.get("task_id") == h.id and event.get("kind") == "succeeded":
                    entry = entry_id
                    break
            time.sleep(0.05)
        assert entry is not None
        broker.xdel(STATUS_QUEUE, entry)  # the outcome is lost on the way
    finally:
        for p in schedulers:
            cluster.kill(p.name, signal.SIGCONT, group=False)
    record = client.wait([h], timeout=120)[h.id]
    assert succeeded_once(record)
    assert record["attempts"][0]["error"]["type"] == "WorkerLost"  # taken as lost, then run again


def test_the_status_stream_holds_only_what_is_in_flight(cluster: LocalCluster, client: Client) -> None:
    broker = redis.Redis.from_url(cluster.settings.broker)
    client.wait(client.map("corral.echo", [{"i": i} for i in range(3000)]), timeout=180)
    # Each task adds about 2 entries; acknowledged ones are trimmed every few seconds.
    wait_until(lambda: broker.xlen(STATUS_QUEUE) < 1000, 30, "the acknowledged entries to be trimmed")
