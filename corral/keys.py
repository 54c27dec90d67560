"""The etcd keyspace of one cluster (DESIGN 4): one place that spells every key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    cluster: str = "default"

    @property
    def root(self) -> str:
        return f"/corral/{self.cluster}/"

    @property
    def leader(self) -> str:
        return self.root + "leader"

    @property
    def summary(self) -> str:
        return self.root + "summary"

    def scheduler(self, sid: str = "") -> str:
        return f"{self.root}schedulers/{sid}"

    def node(self, name: str = "") -> str:
        return f"{self.root}nodes/{name}"

    def node_health(self, name: str = "") -> str:
        return f"{self.root}health/nodes/{name}"

    def gpu_health(self, node: str = "", index: int | None = None) -> str:
        suffix = "" if index is None else str(index)
        return f"{self.root}health/gpus/{node}/{suffix}" if node else f"{self.root}health/gpus/"

    def session(self, name: str = "") -> str:
        return f"{self.root}sessions/{name}"

    def plan(self, node: str = "", index: int | None = None) -> str:
        suffix = "" if index is None else str(index)
        return f"{self.root}plan/{node}/{suffix}" if node else f"{self.root}plan/"

    def task(self, task_id: str = "") -> str:
        return f"{self.root}tasks/{task_id}"


def gpu_queue(node: str, index: int) -> str:
    """Name of the Celery queue that feeds one GPU's worker."""
    return f"corral.gpu.{node}.{index}"


INGRESS_QUEUE = "corral.ingress"
STATUS_QUEUE = "corral.status"
SUBMIT_TASK = "corral.submit"
SESSION_TASK = "corral.session"
RUN_TASK = "corral.run"
