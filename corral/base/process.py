"""Processes and process groups: whether one is still there (for the launcher and for
attempt fences alike), stopping a group and all it holds, a free loopback port."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time


def alive(pid: int) -> bool:
    """True while `pid` runs on this host (a zombie counts as gone). One of this process's
    own children is asked about without reaping it (a GPU worker asks about its pool's
    child for every message it takes: one system call, not a read of /proc)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # not a child of this process
        pass
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_group(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal the group `pid` leads, or the process alone when it leads none."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    """Signal what is left of a process group; nothing when it is gone (its leader may
    already be reaped, and its pid reused: never signal the pid alone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after `grace` seconds."""
    for pid in pids:
        kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) or _group_alive(p) for p in pids):
        _reap()
        time.sleep(0.1)
    for pid in pids:
        kill_group(pid, signal.SIGKILL)
    _reap()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return any(_pgid_of(int(p)) == pgid for p in os.listdir("/proc") if p.isdigit() and alive(int(p)))


def _pgid_of(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGKILL when the thread that started it dies (a GPU
    worker with its node agent, a job with its worker): nothing outlives a lost node."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
