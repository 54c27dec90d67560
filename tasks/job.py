"""Command jobs: a task whose body is a program (`corral job run -- torchrun ...`).

The GPU worker of the job's lead GPU starts the command as a process group of its own,
with `CUDA_VISIBLE_DEVICES` listing exactly the GPUs the scheduler reserved for it, and
watches it until it ends:

- output (stdout and stderr together) goes to the attempt's log stream in Redis
  (`corral.base.joblogs`), bounded;
- `CORRAL_CHECKPOINT_DIR` is restored from the task's latest checkpoint before the start,
  and saved (a compressed tar, as the attempt's checkpoint) whenever its contents change
  and settle, and once more at the end: the next attempt resumes from it wherever it runs;
- a checkpoint request sends the job its checkpoint signal (SIGUSR1 unless it says
  otherwise); a stop request (a drain, a migrate) sends it too, waits up to the grace
  period for a new checkpoint, then stops the group: the attempt yields;
- a superseded attempt (cancelled, or re-routed after a loss) has its group killed at once.

Exit 0 succeeds; the checkpoint exit code (85 unless it says otherwise) means
"checkpointed, run me again" (the attempt yields, and takes no retry budget); any other
exit, or a signal, fails the attempt under the task's retry policy.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.base import joblogs
from corral.base.keys import JOB_ALGORITHM
from corral.base.process import die_with_parent, signal_group
from corral.tasks.context import Context, Stop
from corral.tasks.registry import algorithm

log = logging.getLogger("corral.worker")

JOB = JOB_ALGORITHM
CHECKPOINT_EXIT = 85  # as HTCondor's checkpoint_exit_code
POLL = 0.25  # seconds between looks at the process, its requests and its checkpoint directory
SETTLE = 1.0  # seconds a checkpoint directory that keeps changing waits to be saved
KILL_AFTER = 1.0  # seconds between SIGTERM and SIGKILL when a job is cancelled
STOP_AFTER = 5.0  # ... and when a job asked to move did not stop within its grace period
TAIL = 800  # characters of the output a failure's message quotes
SECRET_PREFIXES = ("CORRAL_", "CELERY_", "FLOWER_")  # the worker's settings hold passwords


class JobFailed(RuntimeError):
    """A job exited with a code other than 0 or its checkpoint code, or died by a signal."""


@dataclass(frozen=True)
class JobSpec:
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    checkpoint_exit: int = CHECKPOINT_EXIT
    checkpoint_signal: str = "SIGUSR1"

    @classmethod
    def parse(cls, args: Any) -> JobSpec:
        """A job's args, checked; ValueError says what is wrong."""
        if not isinstance(args, dict):
            raise ValueError("a job's args must be an object with a 'command'")
        command = args.get("command")
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            raise ValueError("a job's 'command' must be a non-empty list of strings")
        env = args.get("env") or {}
        if not (isinstance(env, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ValueError("a job's 'env' must map names to strings")
        cwd = args.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ValueError("a job's 'cwd' must be a path")
        code = args.get("checkpoint_exit", CHECKPOINT_EXIT)
        if type(code) is not int or not 1 <= code <= 255:
            raise ValueError("a job's 'checkpoint_exit' must be an exit code from 1 to 255")
        sig = args.get("checkpoint_signal", "SIGUSR1")
        if not isinstance(sig, str) or not hasattr(signal, sig) or not sig.startswith("SIG"):
            raise ValueError(f"a job's 'checkpoint_signal' must name a signal, got {sig!r}")
        return cls(command, env, cwd, code, sig)

    def to_args(self) -> dict[str, Any]:
        out: dict[str, Any] = {"command": self.command}
        if self.env:
            out["env"] = self.env
        if self.cwd is not None:
            out["cwd"] = self.cwd
        if self.checkpoint_exit != CHECKPOINT_EXIT:
            out["checkpoint_exit"] = self.checkpoint_exit
        if self.checkpoint_signal != "SIGUSR1":
            out["checkpoint_signal"] = self.checkpoint_signal
        return out


@algorithm(JOB, checkpointable=True)
def job(args: Any, ctx: Context) -> dict[str, Any]:
    return run(JobSpec.parse(args), ctx)


def run(spec: JobSpec, ctx: Context) -> dict[str, Any]:
    settings, client = ctx.worker.settings, ctx.worker.redis
    if not settings.jobs:
        raise JobFailed(f"node {ctx.node} does not run command jobs: its agent needs CORRAL_JOBS=1")
    root = Path(settings.job_dir or tempfile.gettempdir()) / "corral-jobs" / ctx.attempt_id
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "checkpoint"
    folder.mkdir(parents=True)
    output = Output(client, settings.cluster, ctx.attempt_id, settings.job_log_bytes, settings.result_ttl)
    try:
        if restore(ctx.checkpoint, folder):
            output.note(f"restored the checkpoint directory from {ctx.checkpoint.get('attempt', '?')}")
        return Watch(spec, ctx, folder, output, settings.job_checkpoint_bytes).run()
    finally:
        output.flush()
        shutil.rmtree(root, ignore_errors=True)


def environment(spec: JobSpec, ctx: Context, folder: Path) -> dict[str, str]:
    """The worker's environment without corral's own settings, the job's, and its GPUs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    env.update(spec.env)
    env.update(
        CUDA_DEVICE_ORDER="PCI_BUS_ID",
        CUDA_VISIBLE_DEVICES=",".join(str(g) for g in ctx.gpus),
        CORRAL_JOB_ID=ctx.task_id,
        CORRAL_ATTEMPT=str(ctx.number),
        CORRAL_ATTEMPT_ID=ctx.attempt_id,
        CORRAL_CHECKPOINT_DIR=str(folder),
        CORRAL_NODE=ctx.node,
    )
    return env


class Watch:
    """One running job: its process group, its requests, its checkpoint directory."""

    def __init__(self, spec: JobSpec, ctx: Context, folder: Path, output: Output, most: int) -> None:
        self.spec, self.ctx, self.folder, self.output, self.most = spec, ctx, folder, output, most
        self.saved = snapshot_key(folder)  # what the directory held when last saved (or restored)
        self.seen = self.saved
        self.synced = time.monotonic()  # when it was last saved
        self.signalled = False  # for the current checkpoint request

    def run(self) -> dict[str, Any]:
        spec, ctx = self.spec, self.ctx
        began = time.monotonic()
        try:
            proc = subprocess.Popen(
                spec.command, cwd=spec.cwd, env=environment(spec, ctx, self.folder),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent)
        except OSError as exc:
            raise JobFailed(f"cannot start {spec.command[0]!r}: {exc}") from exc
        assert proc.stdout is not None
        pump = threading.Thread(target=self.output.pump, args=(proc.stdout,), daemon=True)
        pump.start()
        self.output.note(f"started {' '.join(spec.command)[:200]} (pid {proc.pid}) on "
                         f"{ctx.node}, GPUs {ctx.gpus}, attempt {ctx.number}")
        stopping: float | None = None  # when a job asked to move is stopped
        asked_from: tuple[tuple[str, int, int], ...] = ()
        try:
            while proc.poll() is None:
                time.sleep(POLL)
                self.output.flush()
                if ctx.superseded():
                    self.output.note("cancelled, or run elsewhere: stopping the job")
                    _kill(proc, KILL_AFTER)
                    raise JobFailed("the attempt was superseded (cancelled, or re-routed)")
                grace = ctx.stop_requested()
                if grace is not None and stopping is None:
                    stopping = time.monotonic() + grace
                    self.output.note(f"asked to move: checkpoint within {grace:g} s, then stop")
                    asked_from = snapshot_key(self.folder)  # what it held before it was asked
                    self._signal(proc)
                elif ctx.checkpoint_requested() and not self.signalled:
                    self._signal(proc)
                if self._sync(hurry=stopping is not None) and stopping is not None \
                        and self.saved != asked_from:
                    stopping = min(stopping, time.monotonic())  # the checkpoint it was asked for
                if stopping is not None and time.monotonic() >= stopping:
                    _kill(proc, STOP_AFTER)
                    self._sync(final=True)
                    raise Stop("stopped to move, from its latest checkpoint")
        finally:
            if proc.poll() is None:
                _kill(proc, KILL_AFTER)
            signal_group(proc.pid, signal.SIGKILL)  # what it left behind in its group goes too
            pump.join(5)
            self.output.flush()
        code = proc.returncode
        if code != 0:  # what the next attempt resumes from
            self._sync(final=True)
        self.output.note(f"exited with {_exit_text(code)} after {time.monotonic() - began:.1f} s")
        if code == 0:
            return {"exit_code": 0, "node": ctx.node, "gpus": ctx.gpus,
                    "seconds": round(time.monotonic() - began, 3)}
        if code == spec.checkpoint_exit:
            raise Stop(f"the job exited {code}: checkpointed, run it again")
        raise JobFailed(f"{spec.command[0]} {_exit_text(code)}; last output: {self.output.tail()!r}")

    def _signal(self, proc: subprocess.Popen[bytes]) -> None:
        """The checkpoint signal, to the processes of the job's group that catch it: one that
        does not (a shell wrapper, a program with no checkpoint support) would die of it."""
        self.signalled = True
        signum = getattr(signal, self.spec.checkpoint_signal)
        told = catchers(proc.pid, signum)
        for pid in told:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        if not told:
            self.output.note(f"no process of the job catches {self.spec.checkpoint_signal}: not sent")

    def _sync(self, final: bool = False, hurry: bool = False) -> bool:
        """Save the checkpoint directory once its contents changed and then held still for
        one poll, or have kept changing for SETTLE seconds (a job that saves all the time),
        or at once when `hurry`ing (asked to move) or at the end; True when a new checkpoint
        was saved."""
        now = snapshot_key(self.folder)
        settled, self.seen = now == self.seen, now
        if now == self.saved or not now:
            return False
        if not (settled or final or hurry or time.monotonic() - self.synced >= SETTLE):
            return False
        packed = pack(self.folder)
        if len(packed) > self.most:
            self.output.note(f"the checkpoint directory packs to {len(packed)} bytes, over the "
                             f"{self.most}-byte limit (CORRAL_JOB_CHECKPOINT_BYTES): not saved")
            self.saved = now
            return False
        self.ctx._save({"files": base64.b64encode(packed).decode(), "bytes": len(packed),
                        "attempt": self.ctx.attempt_id})
        self.saved, self.signalled, self.synced = now, False, time.monotonic()
        self.output.note(f"checkpoint saved ({len(packed)} bytes)")
        return True


class Output:
    """A job's output on its way to the attempt's log stream: the reader thread collects it,
    the watch loop sends it every poll (the last TAIL characters stay for error messages)."""

    def __init__(self, client: Any, cluster: str, attempt_id: str, limit: int, ttl: int) -> None:
        self.client, self.cluster, self.attempt_id = client, cluster, attempt_id
        self.limit, self.ttl = limit, ttl
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._tail = b""

    def pump(self, stream: Any) -> None:
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            with self._lock:
                self._buffer += chunk
                if len(self._buffer) > self.limit:  # Redis unreachable for long: keep the newest
                    del self._buffer[:len(self._buffer) - self.limit]
            self._tail = (self._tail + chunk)[-TAIL:]

    def note(self, text: str) -> None:
        with self._lock:
            self._buffer += f"[corral] {text}\n".encode()

    def tail(self) -> str:
        return self._tail.decode(errors="replace")

    def flush(self) -> None:
        with self._lock:
            data, self._buffer = bytes(self._buffer), bytearray()
        if not data:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                joblogs.append(pipe, self.cluster, self.attempt_id, data, self.limit, self.ttl)
                pipe.execute()
        except Exception as exc:  # kept for the next flush
            log.warning("cannot write the output of %s: %s", self.attempt_id, exc)
            with self._lock:
                self._buffer[:0] = data


def catchers(pgid: int, signum: int) -> list[int]:
    """Processes of a group that catch `signum` (their SigCgt mask in /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            with open(f"/proc/{entry}/status") as fh:
                mask = next((int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        if mask >> (signum - 1) & 1:
            out.append(int(entry))
    return out


def snapshot_key(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What a checkpoint directory holds, cheaply: (path, size, mtime) of each file."""
    out = []
    for path in sorted(folder.rglob("*")):
        with contextlib.suppress(OSError):
            if path.is_file():
                info = path.stat()
                out.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
    return tuple(out)


def pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(folder.rglob("*")):
            with contextlib.suppress(OSError):  # a file removed while packing is left out
                tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def restore(checkpoint: Any, folder: Path) -> bool:
    """Unpack a job checkpoint into `folder`; False when there is none to restore."""
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("files"), str)):
        return False
    data = base64.b64decode(checkpoint["files"])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")  # no paths outside it, no devices
    return True


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _kill(proc: subprocess.Popen[bytes], patience: float) -> None:
    """SIGTERM to the whole group, SIGKILL after `patience` seconds."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(patience)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
