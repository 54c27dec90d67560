"""Fixtures that start real etcd, Redis, schedulers and node agents on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from corral.base.process import alive, free_port
from corral.client import Client
from corral.local import LocalCluster, require_binary


def start_redis(home: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the test's own, on a free port unless given (no persistence); it
    answers on return."""
    port = port or free_port()
    proc = subprocess.Popen([require_binary("redis-server", "redis-server"), "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(home)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, url


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


def running_cluster(tmp_path_factory: pytest.TempPathFactory, **options: object) -> Iterator[LocalCluster]:
    """Start a LocalCluster for a module; stop it and check that no process is left behind."""
    options.setdefault("flower", False)
    lc = LocalCluster(tmp_path_factory.mktemp("cluster"), **options)  # type: ignore[arg-type]
    lc.start()
    yield lc
    pids = cluster_pids(lc)
    lc.stop()
    left = [p for p in pids if alive(p)]
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3)


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    c = Client(cluster.settings)
    yield c
    c.close()


def wait_until(predicate: object, timeout: float, what: str, every: float = 0.05) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def logs_of(cluster: LocalCluster, name: str) -> str:
    return Path(cluster.proc(name).log).read_text(errors="replace")
