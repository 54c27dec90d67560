"""`corral up --detach`, `status --json`, `submit`, `down` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral.local import alive
from tests.conftest import group_members

pytestmark = pytest.mark.integration


def corral(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    out = subprocess.run([sys.executable, "-m", "corral.cli", *args], env={**base, **(env or {})},
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def test_up_detach_status_submit_and_down_leave_nothing_behind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    corral("up", "--detach", "--state-dir", str(state))
    info = json.loads((state / "cluster.json").read_text())
    try:
        assert {"etcd", "broker", "cluster", "flower", "processes"} <= set(info)
        assert info["flower"].startswith("http://127.0.0.1:")
        roles = sorted(p["role"] for p in info["processes"])
        assert roles == ["etcd", "flower", "node", "redis", "scheduler", "scheduler", "scheduler"]
        assert {p["name"] for p in info["processes"]} >= {"sched-1", "sched-2", "sched-3", "node-1"}
        env = {"CORRAL_ETCD": info["etcd"], "CORRAL_BROKER": info["broker"],
               "CORRAL_CLUSTER": info["cluster"]}

        st = json.loads(corral("status", "--json", env=env))
        assert len(st["schedulers"]) == 3
        assert [s["role"] for s in st["schedulers"]].count("leader") == 1
        assert [n["name"] for n in st["nodes"]] == ["node-1"]
        assert [g["index"] for g in st["nodes"][0]["gpus"]] == [0, 1, 2, 3]

        out = corral("submit", "corral.echo", "--args", '{"hello": "corral"}', "--wait", env=env)
        assert json.loads(out) == {"hello": "corral"}
        pids = {p["pid"] for p in info["processes"]}
        for p in info["processes"]:
            pids.update(group_members(p["pid"]))
        assert len(pids) >= 7 + 4  # the node group holds its GPU workers
    finally:
        corral("down", "--state-dir", str(state))
    assert [p for p in pids if alive(p)] == []
    assert not (state / "cluster.json").exists()


def test_down_without_a_cluster_says_so(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "corral.cli", "down", "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no cluster.json" in out.stderr
