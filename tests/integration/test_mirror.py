"""A follower's mirror, read in rounds against a real etcd: it ends up holding exactly what
etcd holds under its root, whatever happened in between."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from etcd3.client import MultiEndpointEtcd3Client

from corral.base.etcd import connect, prefix_json
from corral.local import LocalCluster
from corral.scheduler import mirror as mirror_module
from corral.scheduler.mirror import Mirror
from tests.conftest import running_cluster, wait_until


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=1, schedulers=1)


@pytest.fixture
def etcd(small: LocalCluster) -> Iterator[MultiEndpointEtcd3Client]:
    client = connect(small.settings)
    yield client
    client.close()


def mirror_of(etcd: MultiEndpointEtcd3Client, root: str) -> Mirror:
    return Mirror(etcd, root, lambda: int(etcd.put(root + "mark", "{}").header.revision))


def current(etcd: MultiEndpointEtcd3Client) -> int:
    return int(etcd.get_response("/").header.revision)


def test_a_mirror_catches_up_with_puts_and_deletes_made_after_its_snapshot(
        etcd: MultiEndpointEtcd3Client) -> None:
    root = f"/mirror-{uuid.uuid4().hex[:8]}/"
    for i in range(20):
        etcd.put(f"{root}tasks/{i}", f'{{"n": {i}}}')
    mirror = mirror_of(etcd, root)
    mirror.start()
    try:
        wait_until(lambda: len(mirror.view("tasks/")) == 20, 10, "the snapshot")
        for i in range(2500):  # more revisions than etcd sends a catching-up watch at once
            etcd.put(f"{root}tasks/{i % 300}", f'{{"n": {i}}}')
        for i in range(0, 300, 3):
            etcd.delete(f"{root}tasks/{i}")
        assert mirror.wait_for(current(etcd), timeout=20)
        assert mirror.view("tasks/") == prefix_json(etcd, root + "tasks/")
    finally:
        mirror.stop()


def test_a_mirror_is_current_when_the_last_write_was_outside_its_root(etcd: MultiEndpointEtcd3Client) -> None:
    root = f"/mirror-{uuid.uuid4().hex[:8]}/"
    mirror = mirror_of(etcd, root)
    mirror.start()
    try:
        wait_until(lambda: mirror.revision > 0, 10, "the snapshot")
        etcd.put(f"{root}tasks/a", "{}")
        etcd.put("/elsewhere/b", "{}")  # another cluster's write: no event under the root
        assert mirror.wait_for(current(etcd), timeout=10)
        assert "a" in mirror.view("tasks/")
    finally:
        mirror.stop()


def test_a_mirror_behind_a_compaction_reads_a_snapshot_again(etcd: MultiEndpointEtcd3Client,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(mirror_module, "CATCH_UP", 60.0)  # no round but the one asked for
    root = f"/mirror-{uuid.uuid4().hex[:8]}/"
    etcd.put(f"{root}tasks/old", "{}")
    mirror = mirror_of(etcd, root)
    mirror.start()
    try:
        wait_until(lambda: "old" in mirror.view("tasks/"), 10, "the snapshot")
        held = mirror.revision
        etcd.delete(f"{root}tasks/old")
        etcd.put(f"{root}tasks/new", "{}")
        etcd.compact(current(etcd))  # the history after `held` is gone
        assert mirror.revision == held
        assert mirror.wait_for(current(etcd), timeout=10)
        assert mirror.view("tasks/") == {"new": {}}
        assert "taking a new snapshot" in caplog.text
    finally:
        mirror.stop()
