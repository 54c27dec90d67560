"""The GPU-queue messages the leader builds by hand are the messages kombu and Celery read:
pushed onto a real Redis and taken off with kombu's own Redis transport."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from kombu import Connection

from corral.base.keys import NORMAL, RUN_TASK, URGENT, gpu_queue
from corral.base.wire import EMBED, decode, encode_task
from tests.conftest import start_redis


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.kill()
    proc.wait()


def test_a_hand_built_gpu_message_reads_back_through_kombu_as_a_celery_task(broker: str) -> None:
    queue = gpu_queue("node-1", 0)
    kwargs = {"task_id": "t", "attempt_id": "t.a1", "algorithm": "corral.echo", "args": {"x": [1, 2]}}
    key, payload = encode_task(queue, RUN_TASK, "t.a1", kwargs, NORMAL)
    redis.Redis.from_url(broker).lpush(key, payload)
    with Connection(broker, transport_options={"priority_steps": [0, 3]}) as conn:
        message = conn.SimpleQueue(queue, no_ack=True).get(timeout=5)
    assert message.headers["task"] == RUN_TASK and message.headers["id"] == "t.a1"
    assert message.content_type == "application/json"
    assert message.decode() == [[], kwargs, EMBED]
    assert message.properties["priority"] == NORMAL


def test_an_urgent_message_is_taken_before_normal_ones_already_waiting(broker: str) -> None:
    queue = gpu_queue("node-1", 1)
    client = redis.Redis.from_url(broker)
    for task_id, priority in (("first", NORMAL), ("second", NORMAL), ("urgent", URGENT)):
        client.lpush(*encode_task(queue, RUN_TASK, task_id, {"task_id": task_id}, priority))
    with Connection(broker, transport_options={"priority_steps": [0, 3]}) as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        order = [simple.get(timeout=5).headers["id"] for _ in range(3)]
    assert order == ["urgent", "first", "second"]


def test_the_leaders_decoder_reads_what_a_kombu_producer_sends(broker: str) -> None:
    with Connection(broker) as conn:
        conn.SimpleQueue("corral.test").put({"a": 1}, serializer="json")
    raw = redis.Redis.from_url(broker).rpop("corral.test")
    headers, body, error = decode(raw)
    assert error is None and body == {"a": 1}
