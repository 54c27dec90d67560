"""The README's two commands, from a fresh clone, in a new virtual environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_readme_commands_work_from_a_fresh_clone(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    readme = (clone / "README.md").read_text()
    assert "./dev.sh demo" in readme and "./dev.sh test" in readme
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORRAL_", "VIRTUAL_ENV", "PYTEST"))}
    env["CORRAL_VENV"] = str(tmp_path / "venv")  # a new venv, nothing pre-installed in it

    demo = subprocess.run(["./dev.sh", "demo", "--tasks", "50"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "demo passed" in demo.stdout
    assert "SUCCEEDED 50" in demo.stdout

    test = subprocess.run(["./dev.sh", "test", "tests/unit"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert " passed" in test.stdout
