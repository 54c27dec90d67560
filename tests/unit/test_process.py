"""Whether a process is still there (corral/base/process.py), as fences and the launcher ask."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from corral.base.process import alive


def test_a_running_child_is_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_child_that_exited_is_gone_before_it_is_reaped_and_is_left_to_its_parent_to_reap() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(child.pid)
    assert child.poll() == 0  # still a zombie until now: asking did not reap it


def test_a_process_that_is_not_a_child_is_asked_about_through_the_system() -> None:
    assert alive(os.getppid())
    assert alive(os.getpid())
