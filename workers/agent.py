"""The node agent: registers the node under an etcd lease and keeps one warm Celery
worker per GPU running.

The agent leads its own process group, which holds its GPU workers: killing that
group is losing the node. Workers die with the agent (PR_SET_PDEATHSIG), so an
agent killed alone never leaves orphans that keep taking work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from corral.base.config import Settings
from corral.base.etcd import connect, prefix_json
from corral.base.keys import JOB_ALGORITHM, Keys, gpu_queue
from corral.base.process import die_with_parent
from corral.tasks import registry
from corral.workers.gpus import GpuInfo
from corral.workers.health import HealthMonitor
from corral.workers.metrics import AgentMetrics

log = logging.getLogger("corral.node")

RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass
class WorkerProcess:
    gpu: GpuInfo
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    quarantined: bool = False


class Agent:
    def __init__(self, settings: Settings, name: str, gpus: list[GpuInfo], log_dir: Path,
                 fault_file: Path | None = None, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.name = name
        self.gpus = gpus
        self.log_dir = log_dir
        self.keys = Keys(settings.cluster)
        self.etcd = connect(settings)
        self.ttl = max(1, round(settings.node_ttl))
        self.lease = None
        self.workers = {g.index: WorkerProcess(g) for g in gpus}
        self.health = HealthMonitor(gpus, fault_file)
        self.faults: dict[int, str] = {}
        self.running = True
        self.ready: list[int] = []  # GPUs whose worker consumes from its queue
        self.metrics = AgentMetrics(name, metrics_port, metrics_host)

    def registration(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpus": [g.to_dict() for g in self.gpus],
            "algorithms": [a for a in registry.names() if a != JOB_ALGORITHM or self.settings.jobs],
            "batching": registry.batching(),
            "labels": {},
            "gpu_faults": {str(i): reason for i, reason in self.faults.items()},
            "ready": self.ready,
            "metrics": self.metrics.address,
            "since": time.time(),
        }

    def serve(self) -> None:
        with contextlib.suppress(OSError):  # already a session or group leader
            os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, lambda *_: self._stop())
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for worker in self.workers.values():
            self._start(worker)
        self._register()
        log.info("node %s up with %d GPU(s): %s", self.name, len(self.gpus),
                 ", ".join(f"{g.index}:{g.model}" for g in self.gpus))
        try:
            while self.running:
                self._renew()
                self._check_health()
                self._follow_quarantine()
                self._supervise()
                self._follow_readiness()
                self.metrics.update(self.workers, self.faults, self.ready)
                time.sleep(self.ttl / 4)
        finally:
            self._shutdown()

    def _stop(self) -> None:
        self.running = False

    def _register(self) -> None:
        self.lease = self.etcd.lease(self.ttl)
        self.etcd.put(self.keys.node(self.name), json.dumps(self.registration()), lease=self.lease)

    def _renew(self) -> None:
        try:
            alive = self.lease is not None and any(
                r.TTL > 0 for r in self.etcd.refresh_lease(self.lease.id)
            )
            if not alive:
                log.warning("node lease expired; registering again")
                self._register()
        except Exception as exc:
            log.warning("cannot renew node lease: %s", exc)

    def _check_health(self) -> None:
        faults = self.health.poll()
        if faults != self.faults:
            self.faults = faults
            log.warning("GPU health signal(s): %s", faults)
            try:
                self.etcd.put(self.keys.node(self.name), json.dumps(self.registration()),
                              lease=self.lease)
            except Exception as exc:
                log.warning("cannot report GPU faults: %s", exc)

    def _follow_quarantine(self) -> None:
        """Stop the worker of a quarantined GPU; start it again once released."""
        try:
            health = prefix_json(self.etcd, self.keys.gpu_health(self.name))
        except Exception as exc:
            log.warning("cannot read GPU health: %s", exc)
            return
        for index, worker in self.workers.items():
            quarantined = (health.get(str(index)) or {}).get("state") == "quarantined"
            if quarantined and not worker.quarantined:
                log.warning("GPU %d quarantined: stopping its worker", index)
                worker.quarantined = True
                self._stop_worker(worker)
            elif worker.quarantined and not quarantined:
                log.info("GPU %d released: starting its worker", index)
                worker.quarantined = False
                worker.restarts, worker.next_start = 0, 0.0

    def _ready_file(self, worker: WorkerProcess) -> Path:
        return self.log_dir / f"{self.name}-gpu{worker.gpu.index}.ready"

    def _follow_readiness(self) -> None:
        """Which workers consume (each writes its pid to its ready file once its consumer
        runs); the registration says so, and `corral up` waits for all of them."""
        ready = []
        for index, worker in sorted(self.workers.items()):
            if worker.proc is None or worker.proc.poll() is not None:
                continue
            try:
                if self._ready_file(worker).read_text().strip() == str(worker.proc.pid):
                    ready.append(index)
            except OSError:
                continue
        if ready != self.ready:
            self.ready = ready
            log.info("GPU workers consuming: %s", ready)
            try:
                self.etcd.put(self.keys.node(self.name), json.dumps(self.registration()), lease=self.lease)
            except Exception as exc:
                log.warning("cannot report ready workers: %s", exc)

    def _stop_worker(self, worker: WorkerProcess) -> None:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGQUIT)
            try:
                worker.proc.wait(5)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        worker.proc = None

    def _supervise(self) -> None:
        now = time.monotonic()
        for worker in self.workers.values():
            if worker.quarantined or (worker.proc is not None and worker.proc.poll() is None):
                continue
            if worker.proc is not None:
                log.warning("worker for GPU %d exited with %s; restarting", worker.gpu.index,
                            worker.proc.returncode)
                self.metrics.restarts.labels(str(worker.gpu.index)).inc()
                worker.next_start = now + RESTART_BACKOFF[min(worker.restarts,
                                                              len(RESTART_BACKOFF) - 1)]
                worker.restarts += 1
                worker.proc = None
            if now >= worker.next_start:
                self._start(worker)

    def _start(self, worker: WorkerProcess) -> None:
        gpu = worker.gpu
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(
            CUDA_DEVICE_ORDER="PCI_BUS_ID",
            CUDA_VISIBLE_DEVICES=str(gpu.index),
            CORRAL_NODE=self.name,
            CORRAL_GPU_INDEX=str(gpu.index),
            CORRAL_GPU_UUID=gpu.uuid,
            CORRAL_GPU_MODEL=gpu.model,
            CORRAL_GPU_SIMULATED="1" if gpu.simulated else "0",
            CORRAL_FAULTY="1" if gpu.faulty else "0",
            CORRAL_READY_FILE=str(self._ready_file(worker)),
        )
        self._ready_file(worker).unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "celery", "-A", "corral.tasks.worker", "worker",
            "-Q", gpu_queue(self.name, gpu.index), "-c", "1",
            "--hostname", f"gpu{gpu.index}@{self.name}",
            "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", self.settings.worker_log_level,
        ]
        logfile = open(self.log_dir / f"{self.name}-gpu{gpu.index}.log", "ab")  # noqa: SIM115
        worker.proc = subprocess.Popen(
            cmd, env=env, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        logfile.close()

    def _shutdown(self) -> None:
        for worker in self.workers.values():
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGQUIT)  # cold shutdown: unacked work returns
        deadline = time.monotonic() + 5
        for worker in self.workers.values():
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        if self.lease is not None:
            try:
                self.lease.revoke()
            except Exception:
                log.debug("lease revoke failed", exc_info=True)
        log.info("node %s stopped", self.name)
