"""A command job's arguments and environment, checked without a cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.base.config import Settings
from corral.tasks.context import Context
from corral.tasks.job import JobFailed, JobSpec, catchers, environment, run
from corral.tasks.runner import Worker


def ctx(settings: Settings, gpus: list[int]) -> Context:
    return Context("t", "t.a2", "node-1", gpus[0], "s", number=2, gpus=gpus, worker=Worker(settings, None))


@pytest.mark.parametrize("args, complaint", [
    (None, "object"), ({"command": []}, "non-empty"), ({"command": "ls -l"}, "list of strings"),
    ({"command": ["ls"], "env": {"A": 1}}, "env"), ({"command": ["ls"], "checkpoint_exit": 0}, "exit code"),
    ({"command": ["ls"], "checkpoint_signal": "KILLME"}, "signal"),
])
def test_a_malformed_job_is_refused_with_what_is_wrong(args: object, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        JobSpec.parse(args)


def test_a_job_sees_exactly_its_gpus_and_its_ids_and_none_of_corrals_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_BROKER", "redis://:secret@127.0.0.1:1/0")
    env = environment(JobSpec(["true"], {"MINE": "1"}), ctx(Settings(), [2, 3]), tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["CORRAL_JOB_ID"] == "t"
    assert env["CORRAL_ATTEMPT"] == "2" and env["CORRAL_CHECKPOINT_DIR"] == str(tmp_path)
    assert env["MINE"] == "1" and "CORRAL_BROKER" not in env


def test_a_node_that_does_not_run_jobs_says_how_to_turn_them_on() -> None:
    with pytest.raises(JobFailed, match="CORRAL_JOBS=1"):
        run(JobSpec(["true"]), ctx(Settings(jobs=False), [0]))


def test_the_checkpoint_signal_goes_only_to_the_processes_that_catch_it() -> None:

    code = ("import signal, time; signal.signal(signal.SIGUSR1, lambda *a: None); "
            "print(1, flush=True); time.sleep(30)")
    leader = subprocess.Popen(["sh", "-c", f"{sys.executable} -c '{code}'; sleep 30"],
                              start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert leader.stdout is not None and leader.stdout.readline()
        time.sleep(0.1)
        caught = catchers(leader.pid, signal.SIGUSR1)
        assert len(caught) == 1 and leader.pid not in caught  # the Python child, not the shell
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
