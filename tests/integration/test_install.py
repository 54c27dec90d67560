"""One namespace: `pip install .` puts only `corral` into site-packages, and a scheduler and a
GPU worker started next to a user's own `tasks.py` and `scheduler.py` (the Celery
convention) import corral's modules, never the user's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client import Client
from corral.local import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
TRAP = "raise ImportError('corral imported the user module {name}.py')\n"


def site_packages(env: Path) -> Path:
    (found,) = env.glob("lib/python3*/site-packages")
    return found


def test_pip_install_puts_only_corral_into_a_new_virtual_environment(tmp_path: Path) -> None:
    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    before = {p.name for p in site_packages(env).iterdir()}
    source = tmp_path / "source"  # a copy: the build leaves its own files behind
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".corral*", "__pycache__", ".*_cache", ".hypothesis"))
    subprocess.run([env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    added = {p.name for p in site_packages(env).iterdir()} - before
    assert {n for n in added if not n.endswith(".dist-info")} == {"corral"}
    assert len(added) == 2
    installed = site_packages(env) / "corral"
    for sub in ("base", "tasks", "scheduler", "scheduler/core", "workers", "pipelines"):
        assert (installed / sub / "__init__.py").is_file(), sub


@pytest.fixture(scope="module")
def beside_user_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local cluster whose every process runs in a folder holding a user's own modules."""
    home = tmp_path_factory.mktemp("project")
    for name in ("tasks", "scheduler", "workers", "pipelines"):
        (home / f"{name}.py").write_text(TRAP.format(name=name))
    state = home / ".corral"
    env = {**os.environ, "PYTHONPATH": str(home)}  # as if the user's project were installed too
    subprocess.run([sys.executable, "-m", "corral.cli", "up", "--detach", "--state-dir", str(state),
                    "--schedulers", "1", "--gpus", "1"],
                   check=True, cwd=home, env=env, capture_output=True, timeout=120)
    cluster = LocalCluster.load(state)
    try:
        yield cluster
    finally:
        subprocess.run([sys.executable, "-m", "corral.cli", "down", "--state-dir", str(state)],
                       cwd=home, env=env, capture_output=True, timeout=120)


def test_a_task_runs_on_a_cluster_started_beside_a_users_tasks_and_scheduler_modules(
        beside_user_modules: LocalCluster) -> None:
    info = json.loads((beside_user_modules.dir / "cluster.json").read_text())
    client = Client(beside_user_modules.settings)
    try:
        assert client.submit("corral.echo", {"x": 1}).result(timeout=60) == {"x": 1}
    finally:
        client.close()
    assert {p["role"] for p in info["processes"]} >= {"scheduler", "node"}
