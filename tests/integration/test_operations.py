"""Operators' day one: metrics on every replica and node agent, the status page in a real
browser, secrets off command lines, and a cluster that is ready when it says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from corral.base.config import Settings
from corral.base.etcd import connect, prefix_json
from corral.base.keys import Keys
from corral.client import Client
from corral.local import LocalCluster
from tests.conftest import cluster_pids, running_cluster, wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=2, gpus=2, schedulers=3, flower=True,
                               settings=Settings(cluster="ops"))


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def replicas(cluster: LocalCluster) -> list[dict[str, object]]:
    return Client(cluster.settings).status()["schedulers"]


def registrations(cluster: LocalCluster) -> dict[str, dict[str, object]]:
    etcd = connect(cluster.settings)
    try:
        return prefix_json(etcd, Keys(cluster.settings.cluster).node())
    finally:
        etcd.close()


def test_the_cluster_is_ready_only_when_every_gpu_worker_consumes(cluster: LocalCluster) -> None:
    for name, info in registrations(cluster).items():
        assert sorted(info["ready"]) == [g["index"] for g in info["gpus"]], name  # type: ignore[index]


def test_every_scheduler_replica_serves_metrics_and_one_says_it_leads(cluster: LocalCluster,
                                                                     client: Client) -> None:
    client.wait(client.map("corral.echo", [{"i": i} for i in range(20)]), timeout=60)
    wait_until(lambda: client.status()["tasks"]["succeeded"] >= 20, 10, "the summary to count them")
    texts = [get(str(r["address"]) + "/metrics") for r in replicas(cluster)]
    assert len(texts) == 3
    assert sum('corral_leader 1.0' in t for t in texts) == 1
    for text in texts:  # any replica shows the cluster's gauges
        assert 'corral_tasks{state="SUCCEEDED"}' in text
        assert 'corral_gpu_health{gpu="0",node="node-1",state="healthy"} 1.0' in text
        assert "corral_session_backlog" in text and "corral_etcd_db_bytes" in text
    leader = next(t for t in texts if 'corral_leader 1.0' in t)
    assert 'corral_routing_seconds_count' in leader and "corral_takeovers_total 1.0" in leader


def test_node_agents_serve_metrics_of_their_workers(cluster: LocalCluster) -> None:
    for name, info in registrations(cluster).items():
        text = get(str(info["metrics"]) + "/metrics")
        assert 'corral_node_worker_up{gpu="0"} 1.0' in text, name
        assert 'corral_node_worker_ready{gpu="1"} 1.0' in text, name


def test_no_password_is_on_any_command_line(cluster: LocalCluster) -> None:
    secrets = [cluster.redis_password, cluster.info["flower_user"].split(":", 1)[1]]
    for pid in cluster_pids(cluster):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        for secret in secrets:
            assert secret not in argv, f"a password is on the command line of pid {pid}: {argv[:120]}"


def test_flower_still_asks_for_its_password(cluster: LocalCluster) -> None:
    with pytest.raises(urllib.error.HTTPError) as denied:
        get(cluster.info["flower"] + "/workers")
    assert denied.value.code == 401


class GpuRows(HTMLParser):
    """The rows of the page's GPU table, as the browser rendered them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_gpus = self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._in_gpus = ("id", "gpus") in attrs
        elif self._in_gpus and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._in_gpus = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no chromium (./dev.sh test installs Debian's)")
def test_the_status_page_shows_the_gpus_as_corral_status_does(cluster: LocalCluster, tmp_path: Path) -> None:
    follower = next(r for r in replicas(cluster) if r["role"] == "follower")  # any replica answers
    url = str(follower["address"]) + "/"
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000"]
    out = Path(os.environ.get("CORRAL_TEST_OUTPUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "status-page.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1280,1000", url],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
    def gpus_by_corral_status() -> dict[tuple[str, int], tuple[str, str]]:
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "corral.cli", "status", "--json"], capture_output=True, text=True,
            timeout=60, check=True, env={**os.environ, **cluster.settings.to_env()}).stdout)
        return {(n["name"], g["index"]): (g["state"], g["session"] or "") for n in status["nodes"]
                for g in n["gpus"]}

    for _ in range(5):  # the plan may change while the browser runs: compare a quiet moment
        before = gpus_by_corral_status()
        dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        if gpus_by_corral_status() == before:
            break
    assert 'data-loaded="1"' in dom, dom[:500]
    parser = GpuRows()
    parser.feed(dom)
    assert {(r[0], int(r[1])): (r[3], r[4]) for r in parser.rows} == before
    print(f"\nstatus page screenshot: {shot}")
