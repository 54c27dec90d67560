"""Fixtures that start real etcd, Redis, schedulers and node agents on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client import Client
from corral.local import LocalCluster, alive


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            try:
                if os.getpgid(pid) == pgid and alive(pid):
                    out.append(pid)
            except OSError:
                continue
    return out


def cluster_pids(cluster: LocalCluster) -> list[int]:
    pids: set[int] = set()
    for proc in cluster.procs:
        pids.add(proc.pid)
        pids.update(group_members(proc.pid))
    return sorted(pids)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = LocalCluster(tmp_path_factory.mktemp("cluster"), nodes=1, gpus=4, schedulers=3,
                      flower=False)
    lc.start()
    yield lc
    pids = cluster_pids(lc)
    lc.stop()
    left = [p for p in pids if alive(p)]
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    c = Client(cluster.settings)
    yield c
    c.close()


def logs_of(cluster: LocalCluster, name: str) -> str:
    return Path(cluster.proc(name).log).read_text(errors="replace")
