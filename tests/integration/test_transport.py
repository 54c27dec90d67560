"""The GPU workers' kombu transport (tasks/transport.py) against a real redis-server: one
redis-py client per channel, made again when kombu replaces the channel's pool."""

from __future__ import annotations

from pathlib import Path

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
