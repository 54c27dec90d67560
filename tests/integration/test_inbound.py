"""The leader's ingress acknowledgements, against a real Redis."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from corral.base.keys import INGRESS_QUEUE
from corral.scheduler.inbound import Inbound
from tests.conftest import start_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[redis.Redis]:
    proc, url = start_redis(tmp_path)
    client = redis.Redis.from_url(url)
    yield client
    client.close()
    proc.kill()
    proc.wait()


def read(inbound: Inbound, inbox: queue.SimpleQueue[Any], n: int) -> list[tuple[Any, ...]]:
    """The tokens of the next n ingress messages the reader hands the leader."""
    tokens = []
    while len(tokens) < n:
        event = inbox.get(timeout=10)
        if event[0] == "ingress":
            tokens.append(event[4])
    return tokens


def test_an_acknowledgement_sent_twice_drops_no_message_that_is_not_yet_durable(
        broker: redis.Redis) -> None:
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    inbound = Inbound(broker, "replica-a", inbox)
    broker.lpush(INGRESS_QUEUE, b"first", b"second", b"third")
    inbound.start()
    try:
        first, _, _ = read(inbound, inbox, 3)
        for _ in range(2):  # the same pipeline again, as after a dropped connection
            with broker.pipeline(transaction=False) as pipe:
                inbound.queue_acks(pipe, [first])
                pipe.execute()
        assert broker.lrange(inbound.processing, 0, -1) == [b"third", b"second"]
    finally:
        inbound.stop()
    assert broker.lrange(INGRESS_QUEUE, 0, -1) == [b"third", b"second"]  # handed back, in order
