"""The leader keeps etcd's revision history short, so that etcd's quota never fills."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.base.config import Settings
from corral.base.etcd import connect
from corral.base.keys import Keys
from corral.client import Client
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=1, schedulers=1,
                               settings=Settings(cluster="local", etcd_history=2.0))


def compacted(etcd: object, key: str, revision: int) -> bool:
    try:
        etcd.get_response(key, revision=revision)  # type: ignore[attr-defined]
    except Exception as exc:
        return "compacted" in str(exc)
    return False


def test_the_leader_compacts_etcd_history_older_than_it_keeps(cluster: LocalCluster) -> None:
    client = Client(cluster.settings)
    client.wait(client.map("corral.echo", [{"i": i} for i in range(20)]), timeout=60)
    etcd = connect(cluster.settings)
    leader = Keys(cluster.settings.cluster).leader
    revision = etcd.get_response(leader).header.revision
    assert not compacted(etcd, leader, revision)
    wait_until(lambda: compacted(etcd, leader, revision), 20, "compaction past that revision")
    assert client.wait(client.map("corral.echo", [{"i": 1}]), timeout=30)  # and work goes on
    client.close()
