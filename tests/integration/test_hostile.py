"""Careless and hostile input against a real 3-scheduler cluster: nothing one message holds
stops a scheduler or a worker, and only work the leader issued runs on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.base import fence
from corral.base.keys import INGRESS_QUEUE, NORMAL, RUN_TASK, gpu_queue
from corral.base.process import alive, free_port
from corral.base.wire import encode_task
from corral.client import Client, Retry, SessionConflict, TaskFailed
from corral.local import LocalCluster
from corral.scheduler.ingress import unidentified
from tests.conftest import cluster_pids, running_cluster, wait_until
from tests.hostile import envelope, raw_messages


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3)


@pytest.fixture(scope="module")
def broker(cluster: LocalCluster) -> redis.Redis:
    return redis.Redis.from_url(cluster.settings.broker)


def schedulers_alive(cluster: LocalCluster) -> bool:
    return all(alive(p.pid) for p in cluster.procs if p.role == "scheduler")


def test_finding_1_a_session_message_holding_infinity_stops_no_scheduler(
        cluster: LocalCluster, client: Client, broker: redis.Redis) -> None:
    broker.lpush(INGRESS_QUEUE, envelope("corral.session", {"name": "inf", "fixed_workers": float("inf")},
                                         "session-inf"))
    assert client.submit("corral.echo", {"after": "inf"}).result(timeout=30) == {"after": "inf"}
    record = client.task("session-inf")
    assert record["state"] == "REJECTED" and "fixed_workers must be a whole number" in record["reason"]
    assert schedulers_alive(cluster)


def test_finding_2_a_task_that_kills_its_worker_every_time_fails_within_three_deaths_on_a_healthy_gpu(
        client: Client) -> None:
    h = client.submit("corral.crash", {}, retry=Retry(local=5, hosts=5))
    with pytest.raises(TaskFailed, match="poison"):
        h.result(timeout=120)
    deaths = [a for a in client.task(h.id)["attempts"] if (a.get("error") or {}).get("type") == "WorkerLost"]
    assert len(deaths) == 3
    for node in client.status()["nodes"]:
        assert {g["state"] for g in node["gpus"]} == {"healthy"}
    assert client.submit("corral.echo", 1).result(timeout=60) == 1  # the workers came back


def test_finding_7_a_second_client_can_join_a_session_but_not_change_or_close_it(
        cluster: LocalCluster) -> None:
    first, second = Client(cluster.settings), Client(cluster.settings)
    try:
        with first.session("shared", fixed_workers=1):
            wait_until(lambda: (first.session_record("shared") or {}).get("state") == "open", 10,
                       "session open")
            with pytest.raises(SessionConflict, match="fixed_workers"):
                second.open_session("shared", fixed_workers=2)
            with second.session("shared", fixed_workers=1) as joined:
                assert joined.submit("corral.echo", 2).result(timeout=30) == 2
            time.sleep(1.0)  # the close the second client sent has been handled
            assert first.session_record("shared")["state"] == "open"
        wait_until(lambda: first.session_record("shared")["state"] == "closed", 10, "closed by its owner")
    finally:
        first.close()
        second.close()


def test_finding_8_a_run_message_no_leader_issued_is_refused_by_the_worker(
        cluster: LocalCluster, broker: redis.Redis) -> None:
    refused = int(broker.get(fence.refused_key(cluster.settings.cluster)) or 0)
    message = {"task_id": "forged", "attempt_id": "forged.a1", "number": 1, "algorithm": "corral.echo",
               "args": {"pwned": True}, "session": "default", "node": "node-1", "gpu": 0}
    broker.lpush(*encode_task(gpu_queue("node-1", 0), RUN_TASK, "forged.a1", message, NORMAL))
    wait_until(lambda: int(broker.get(fence.refused_key(cluster.settings.cluster)) or 0) > refused, 30,
               "the worker refused the forged attempt")
    assert not broker.keys("*forged*result*") and not broker.keys("*result*forged*")


def test_finding_9_status_without_etcd_is_one_line_naming_the_address_and_exit_2() -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "CORRAL_ETCD": address}
    out = subprocess.run([sys.executable, "-m", "corral.cli", "status"], capture_output=True, text=True,
                         env=env, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and address in out.stderr
    assert "Traceback" not in out.stderr


GOOD_EVERY = 10


@pytest.mark.slow
def test_hundreds_of_hostile_messages_stop_nothing_and_every_good_task_runs_once(
        cluster: LocalCluster, client: Client, broker: redis.Redis) -> None:
    before = [p for p in cluster_pids(cluster) if alive(p)]
    sent: list[tuple[str, bytes]] = []
    good = []

    @settings(max_examples=320, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def push(data: st.DataObject) -> None:
        message_id = f"fz-{len(sent)}"
        raw = data.draw(raw_messages(message_id))
        broker.lpush(INGRESS_QUEUE, raw)
        sent.append((message_id, raw))
        if len(sent) % GOOD_EVERY == 0:
            good.append(client.submit("corral.echo", {"good": len(sent)}, session="good"))

    push()
    assert len(sent) >= 300
    records = client.wait(good, timeout=300)
    for h in good:
        record = records[h.id]
        assert record["state"] == "SUCCEEDED", record
        assert [a["state"] for a in record["attempts"]].count("SUCCEEDED") == 1
        assert h.result(timeout=10)["good"] > 0
    wait_until(lambda: client.status()["leader"]["id"] is not None, 10, "a leader")
    explained = 0
    for message_id, raw in sent:
        for task_id in (message_id, unidentified(raw)):
            record = client.task(task_id)
            if record is not None and record["state"] == "REJECTED":
                assert record["reason"] and record["reason"].isprintable() and len(record["reason"]) <= 500
                explained += 1
    assert explained >= len(sent) // 3  # most hostile messages are refused, each with its reason
    assert [p for p in before if not alive(p)] == []  # no scheduler, agent or worker died
    assert schedulers_alive(cluster)
    json.dumps(client.status(), allow_nan=False)
