"""Prometheus metrics of a scheduler replica, served at `/metrics` (docs/operations.md, Metrics).

Two kinds. Cluster gauges come from the cluster summary, the leader's own or, on a follower,
the copy the leader writes to etcd twice a second (so any replica answers, and a scrape of
all three gives the same picture). Counters and histograms count what this replica decided
while it led (the core's `stats`, drained every tick): Prometheus sums them over replicas,
so they survive failovers as any counter survives a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from corral.scheduler.records import TASK_STATES

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# etcd round trips: a leader whose lease refresh nears its TTL minus 0.5 s steps down
ETCD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0)
GPU_STATES = ("healthy", "suspect", "quarantined", "lost", "rejoining", "draining")
NODE_STATES = ("up", "lost", "rejoining", "quarantined", "drained")

# Core stats -> (counter, its labels). Names in the core are short; metric names are not.
_COUNTED = {
    "retry_local": ("corral_retries_total", {"kind": "local"}),
    "reassigned": ("corral_reassignments_total", {}),
    "quarantine": ("corral_quarantines_total", {}),
    "node_lost": ("corral_nodes_lost_total", {}),
    "attempt_failed": ("corral_attempts_failed_total", {}),
    "task_failed": ("corral_tasks_failed_total", {}),
}


class Metrics:
    def __init__(self, replica: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.summary: dict[str, Any] = {}
        self.role = "follower"
        self.replica = replica
        r = self.registry
        self.counters = {
            "corral_retries_total": Counter("corral_retries_total", "Local retries decided", ["kind"],
                                            registry=r),
            "corral_reassignments_total": Counter("corral_reassignments_total",
                                                  "Tasks moved to another GPU after a failure", registry=r),
            "corral_quarantines_total": Counter("corral_quarantines_total", "GPUs quarantined", registry=r),
            "corral_nodes_lost_total": Counter("corral_nodes_lost_total", "Nodes declared lost", registry=r),
            "corral_attempts_failed_total": Counter("corral_attempts_failed_total", "Attempts that failed",
                                                    registry=r),
            "corral_tasks_failed_total": Counter("corral_tasks_failed_total", "Tasks that ended FAILED",
                                                 registry=r),
        }
        self.rejected = Counter("corral_rejected_total", "Ingress messages rejected, by reason", ["reason"],
                                registry=r)
        self.takeovers = Counter("corral_takeovers_total", "Times this replica became the leader",
                                 registry=r)
        self.latency = {
            "route": Histogram("corral_routing_seconds", "From a task's submission to its first dispatch",
                               buckets=LATENCY_BUCKETS, registry=r),
            "start": Histogram("corral_submit_to_start_seconds",
                               "From a task's submission to its first attempt's start",
                               buckets=LATENCY_BUCKETS, registry=r),
            "commit": Histogram("corral_etcd_commit_seconds",
                                "The leader's fenced etcd writes of one tick (every task record passes here "
                                "before its dispatch)", buckets=ETCD_BUCKETS, registry=r),
            "lease": Histogram("corral_lease_refresh_seconds",
                               "The leader's lease refreshes and checks (it steps down when one has not "
                               "succeeded within its TTL minus 0.5 s)", buckets=ETCD_BUCKETS, registry=r),
        }
        self.leader = Gauge("corral_leader", "1 while this replica leads", registry=r)
        r.register(_SummaryCollector(self))

    def count(self, stats: dict[str, int], latencies: list[tuple[str, float]]) -> None:
        """What the core counted since the last call."""
        for name, n in stats.items():
            if name.startswith("rejected:"):
                self.rejected.labels(name.partition(":")[2]).inc(n)
            elif name in _COUNTED:
                metric, labels = _COUNTED[name]
                counter = self.counters[metric]
                (counter.labels(**labels) if labels else counter).inc(n)
        for kind, seconds in latencies:
            self.latency[kind].observe(seconds)

    def timed(self, kind: str) -> Any:
        """Times what runs inside it into a histogram: the leader's own round trips to
        etcd (`commit`, `lease`)."""
        return self.latency[kind].time()

    def render(self) -> bytes:
        self.leader.set(1 if self.role == "leader" else 0)
        return generate_latest(self.registry)


class _SummaryCollector(Collector):
    """Cluster gauges, read from the latest summary at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Any]:
        return []  # computed at collection: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        s = self.m.summary or {}
        tasks = GaugeMetricFamily("corral_tasks", "Tasks by state (finished ones within the dedup window)",
                                  labels=["state"])
        for state in TASK_STATES:
            tasks.add_metric([state], (s.get("tasks") or {}).get(state.lower(), 0))
        yield tasks
        backlog = GaugeMetricFamily("corral_session_backlog", "PENDING tasks of a session",
                                    labels=["session"])
        running = GaugeMetricFamily("corral_session_running", "RUNNING tasks of a session",
                                    labels=["session"])
        gpus = GaugeMetricFamily("corral_session_gpus", "GPUs planned for a session, fixed and shared",
                                 labels=["session", "kind"])
        for sess in s.get("sessions") or []:
            name = str(sess.get("name"))
            backlog.add_metric([name], sess.get("pending", 0))
            running.add_metric([name], sess.get("running", 0))
            allocated = int(sess.get("allocated", 0))
            fixed = min(int(sess.get("fixed_workers", 0)), allocated)
            gpus.add_metric([name, "fixed"], fixed)
            gpus.add_metric([name, "shared"], allocated - fixed)
        yield backlog
        yield running
        yield gpus
        outstanding = GaugeMetricFamily("corral_gpu_queue_outstanding",
                                        "Attempts sent to a GPU's queue and not yet ended",
                                        labels=["node", "gpu"])
        health = GaugeMetricFamily("corral_gpu_health", "1 for a GPU's current health state",
                                   labels=["node", "gpu", "state"])
        planned = GaugeMetricFamily("corral_gpu_session", "1 for the session a GPU serves",
                                    labels=["node", "gpu", "session"])
        for gpu in s.get("gpus") or []:
            node, index = str(gpu.get("node")), str(gpu.get("index"))
            outstanding.add_metric([node, index], gpu.get("outstanding", 0))
            for state in GPU_STATES:
                health.add_metric([node, index, state], 1 if gpu.get("state") == state else 0)
            if gpu.get("session"):
                planned.add_metric([node, index, str(gpu["session"])], 1)
        yield outstanding
        yield health
        yield planned
        nodes = GaugeMetricFamily("corral_node_state", "1 for a node's current state",
                                  labels=["node", "state"])
        for name, node in (s.get("nodes") or {}).items():
            for state in NODE_STATES:
                nodes.add_metric([name, state], 1 if node.get("state") == state else 0)
        yield nodes
        admission = s.get("admission") or {}
        yield GaugeMetricFamily("corral_etcd_db_bytes", "etcd's database size, as the leader last read it",
                                value=admission.get("etcd_bytes", 0))
        yield GaugeMetricFamily("corral_admission_open", "1 while new work is admitted",
                                value=1 if admission.get("open", True) else 0)
        yield GaugeMetricFamily("corral_live_tasks", "Unfinished tasks in etcd",
                                value=admission.get("live", 0))
