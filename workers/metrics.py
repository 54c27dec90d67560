"""A node agent's Prometheus metrics (`/metrics` on `--metrics-port`): its workers and the
health signals it reads. The cluster's view (tasks, sessions, GPU health as the leader
decided it) is on the schedulers' `/metrics`."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class AgentMetrics:
    def __init__(self, node: str, port: int | None, host: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.up = Gauge("corral_node_worker_up", "1 while a GPU's worker process runs", ["gpu"], registry=r)
        self.ready = Gauge("corral_node_worker_ready", "1 while a GPU's worker consumes from its queue",
                           ["gpu"], registry=r)
        self.restarts = Counter("corral_node_worker_restarts", "Worker processes restarted after an exit",
                                ["gpu"], registry=r)
        self.fault = Gauge("corral_node_gpu_fault", "1 while the agent reads a health signal (Xid, ECC) "
                           "for a GPU", ["gpu"], registry=r)
        self.quarantined = Gauge("corral_node_gpu_quarantined", "1 while a GPU's worker is stopped: "
                                 "the GPU is quarantined", ["gpu"], registry=r)
        self.address = ""
        if port is not None:
            server, _thread = start_http_server(port, addr=host, registry=r)
            self.address = f"http://{host}:{server.server_address[1]}"

    def update(self, workers: dict[int, Any], faults: dict[int, str], ready: list[int] | None = None) -> None:
        for index, worker in workers.items():
            label = str(index)
            self.up.labels(label).set(1 if worker.proc is not None and worker.proc.poll() is None else 0)
            self.quarantined.labels(label).set(1 if worker.quarantined else 0)
            self.fault.labels(label).set(1 if index in faults else 0)
            if ready is not None:
                self.ready.labels(label).set(1 if index in ready else 0)
