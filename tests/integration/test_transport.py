"""The GPU workers' kombu transport (corral/base/transport.py) against a real redis-server:
one redis-py client per channel, made again when kombu replaces the channel's pool; a
delivery kept where kombu's restore finds it until it is acknowledged."""

from __future__ import annotations

from pathlib import Path

import kombu
import redis

from corral.base.config import Settings
from corral.base.transport import Channel, for_url
from corral.tasks.app import make_app
from tests.conftest import start_redis


def test_the_worker_app_uses_corrals_transport_for_plain_and_sentinel_urls() -> None:
    assert for_url("redis://127.0.0.1:6379/0").endswith(":Transport")
    assert for_url("sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380").endswith(":SentinelTransport")


def test_a_channel_acknowledges_with_one_client_until_its_pool_is_replaced(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    try:
        app = make_app(Settings(cluster="t", broker=url), worker=True)
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            assert isinstance(channel, Channel)
            with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
                assert first is again
                assert first.ping()
            channel._disconnect_pools()  # what kombu does after a lost connection
            with channel.conn_or_acquire() as after:
                assert after is not first
                assert after.ping()
    finally:
        proc.kill()
        proc.wait()


def test_a_delivery_is_kept_until_acknowledged_where_kombus_restore_finds_it(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    try:
        app = make_app(Settings(cluster="t", broker=url), worker=True)
        r = redis.Redis.from_url(url)
        with app.connection_for_write() as conn:
            queue = kombu.Queue("probe", routing_key="probe")
            producer = conn.Producer()
            for n in (1, 2):
                producer.publish({"n": n}, routing_key="probe", declare=[queue], serializer="json")
            channel = conn.default_channel
            index, held = channel.unacked_index_key, channel.unacked_key
            first = queue(channel).get(no_ack=False)
            assert first.payload == {"n": 1}
            assert r.zcard(index) == 1 and r.hlen(held) == 1
            first.ack()
            assert r.zcard(index) == 0 and r.hlen(held) == 0
            second = queue(channel).get(no_ack=False)
            assert second.payload == {"n": 2}
            channel.qos.restore_unacked()  # what kombu does when its connection goes
            assert r.zcard(index) == 0 and r.hlen(held) == 0
            again = queue(channel).get(no_ack=True)
            assert again.payload == {"n": 2}
        r.close()
    finally:
        proc.kill()
        proc.wait()
