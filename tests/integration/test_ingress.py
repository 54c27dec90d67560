"""Any Celery client can submit (docs/contracts.md); malformed messages are rejected with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import pytest
from kombu import Connection, Exchange, Queue

from corral.base.keys import INGRESS_QUEUE
from corral.client import Client
from corral.local import LocalCluster

pytestmark = pytest.mark.integration

PLAIN_PRODUCER = textwrap.dedent(
    """
    import sys
    from celery import Celery
    app = Celery(broker=sys.argv[1])
    app.conf.task_serializer = "json"
    app.send_task("corral.submit", queue="corral.ingress", kwargs={
        "algorithm": "corral.echo", "args": {"from": "plain celery"}, "session": "outside",
        "task_id": sys.argv[2], "gpus": 1, "retry": {"local": 1, "hosts": 1}})
    assert "corral" not in sys.modules and "tasks" not in sys.modules
    """
)


def publish_raw(cluster: LocalCluster, body: object, message_id: str, **options: object) -> None:
    """Put a hand-made message on the ingress queue, as a foreign or broken producer would."""
    headers = {"lang": "py", "task": "corral.submit", "id": message_id, "root_id": message_id,
               "parent_id": None, "group": None}
    with Connection(cluster.settings.broker) as conn:
        queue = Queue(INGRESS_QUEUE, Exchange(INGRESS_QUEUE), routing_key=INGRESS_QUEUE)
        conn.Producer().publish(body, exchange=queue.exchange, routing_key=INGRESS_QUEUE,
                                declare=[queue], headers=headers, **options)


def submit_kwargs(cluster: LocalCluster, kwargs: dict[str, object], message_id: str) -> None:
    publish_raw(cluster, [[], kwargs, {"callbacks": None, "errbacks": None, "chain": None,
                                       "chord": None}], message_id, serializer="json")


def corral_task(cluster: LocalCluster, task_id: str) -> dict[str, object]:
    env = {**cluster.settings.to_env()}
    out = subprocess.run([sys.executable, "-m", "corral.cli", "task", task_id], env={
        **__import__("os").environ, **env}, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def wait_record(client: Client, task_id: str, timeout: float = 30) -> dict[str, object]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.task(task_id)
        if record and record["state"] in ("SUCCEEDED", "FAILED", "REJECTED"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not terminal after {timeout} s: {client.task(task_id)}")


def test_a_plain_celery_producer_gets_its_task_run(cluster: LocalCluster, client: Client) -> None:
    task_id = f"plain-{uuid.uuid4().hex[:8]}"
    subprocess.run([sys.executable, "-c", PLAIN_PRODUCER, cluster.settings.broker, task_id],
                   check=True, timeout=60)
    record = wait_record(client, task_id)
    assert record["state"] == "SUCCEEDED"
    assert record["session"] == "outside"
    assert client.result(record) == {"from": "plain celery"}


@pytest.fixture
def around(client: Client):
    """Valid tasks submitted before and after each bad message: all must succeed."""
    before = client.map("corral.echo", [{"k": i} for i in range(10)])
    yield
    after = client.map("corral.echo", [{"k": i} for i in range(10, 20)])
    records = client.wait(before + after, timeout=60)
    for i, h in enumerate(before + after):
        assert records[h.id]["state"] == "SUCCEEDED"
        assert client.result(records[h.id]) == {"k": i}


def test_a_body_that_is_not_json_is_rejected_with_a_reason(
    cluster: LocalCluster, client: Client, around: None
) -> None:
    mid = f"bad-json-{uuid.uuid4().hex[:8]}"
    publish_raw(cluster, b"{this is not json", mid, content_type="application/json",
                content_encoding="utf-8")
    wait_record(client, mid)
    record = corral_task(cluster, mid)
    assert record["state"] == "REJECTED"
    assert "undecodable" in record["reason"]


def test_a_pickled_message_is_rejected_and_never_unpickled(
    cluster: LocalCluster, client: Client, around: None
) -> None:
    mid = f"pickle-{uuid.uuid4().hex[:8]}"
    publish_raw(cluster, [[], {"algorithm": "corral.echo", "args": 1}, {}], mid, serializer="pickle")
    record = wait_record(client, mid)
    assert record["state"] == "REJECTED"
    assert "python-serialize" in record["reason"] or "pickle" in record["reason"]


def test_a_missing_algorithm_is_rejected_with_a_reason(
    cluster: LocalCluster, client: Client, around: None
) -> None:
    mid = f"noalgo-{uuid.uuid4().hex[:8]}"
    submit_kwargs(cluster, {"args": {"x": 1}, "session": "s", "task_id": mid}, mid)
    record = wait_record(client, mid)
    assert record["state"] == "REJECTED"
    assert "missing 'algorithm'" in record["reason"]


def test_an_unknown_algorithm_is_rejected_with_a_reason(
    cluster: LocalCluster, client: Client, around: None
) -> None:
    mid = f"unknown-{uuid.uuid4().hex[:8]}"
    submit_kwargs(cluster, {"algorithm": "no.such.algo", "args": {}, "task_id": mid}, mid)
    record = wait_record(client, mid)
    assert record["state"] == "REJECTED"
    assert "unknown algorithm 'no.such.algo'" in record["reason"]


def test_args_over_the_size_limit_are_rejected_with_a_reason(
    cluster: LocalCluster, client: Client, around: None
) -> None:
    mid = f"big-{uuid.uuid4().hex[:8]}"
    big = {"blob": "x" * (300 * 1024)}
    submit_kwargs(cluster, {"algorithm": "corral.echo", "args": big, "task_id": mid}, mid)
    record = wait_record(client, mid)
    assert record["state"] == "REJECTED"
    assert "inline limit" in record["reason"]
    assert "args" not in record or record["args"] is None


def test_rejections_are_logged_by_the_leader(cluster: LocalCluster, client: Client) -> None:
    from tests.conftest import logs_of

    mid = f"logged-{uuid.uuid4().hex[:8]}"
    submit_kwargs(cluster, {"algorithm": "nope", "task_id": mid}, mid)
    wait_record(client, mid)
    leader = client.status()["leader"]["id"]
    assert f"rejected ingress message {mid}" in logs_of(cluster, leader)
