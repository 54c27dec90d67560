"""A worker's writes behind its work (tasks/reporter.py), against a real redis-server: in
order, all written before flush() returns, and a Redis that stays away is raised, not hidden."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from corral.base.keys import STATUS_QUEUE
from corral.tasks.reporter import Reporter
from corral.tasks.status import publish, status_event
from tests.conftest import start_redis


def test_queued_writes_are_all_in_redis_in_order_when_flush_returns(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(url)
        reporter = Reporter(client)
        reporter.start()
        for i in range(500):
            reporter.send(lambda pipe, i=i: pipe.rpush("written", i))
        reporter.flush()
        assert [int(x) for x in client.lrange("written", 0, -1)] == list(range(500))
    finally:
        proc.kill()
        proc.wait()


def test_writes_wait_through_a_short_redis_outage(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(url, socket_timeout=1)
    reporter = Reporter(client, patience=30)
    reporter.start()
    proc.kill()
    proc.wait()
    reporter.send(lambda pipe: pipe.set("outcome", "kept"))
    time.sleep(0.5)
    proc, _ = start_redis(tmp_path, port)
    try:
        reporter.flush()
        assert client.get("outcome") == b"kept"
    finally:
        proc.kill()
        proc.wait()


def test_flush_raises_when_redis_stays_away_past_the_patience(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    proc.kill()
    proc.wait()
    reporter = Reporter(redis.Redis.from_url(url, socket_timeout=1), patience=0.5)
    reporter.start()
    reporter.send(lambda pipe: pipe.set("outcome", "lost"))
    with pytest.raises(redis.ConnectionError):
        reporter.flush()
    reporter.flush()  # the error is raised once; nothing is left queued


def test_a_started_that_waits_with_its_attempts_outcome_is_left_out(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(url)
        reporter = Reporter(client)  # not started yet: both entries wait for one pipeline
        reporter.started([status_event("started", "t1", "t1.a1", "n", 0),
                          status_event("started", "t2", "t2.a1", "n", 0)])
        reporter.send(lambda pipe: publish(pipe, status_event("succeeded", "t1", "t1.a1", "n", 0)),
                      frozenset({"t1.a1"}))
        reporter.start()
        reporter.flush()
        kinds = [(json.loads(fields[b"e"])["kind"], json.loads(fields[b"e"])["task_id"])
                 for _, fields in client.xrange(STATUS_QUEUE)]
        assert kinds == [("started", "t2"), ("succeeded", "t1")]
    finally:
        proc.kill()
        proc.wait()
