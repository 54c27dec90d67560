"""The etcd keyspace of one cluster (docs/contracts.md, etcd keyspace): one place that spells every key."""

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

    def done(self, chunk: str = "") -> str:
        """Ids of tasks moved to the history store, with their summaries (the dedup window)."""
        return f"{self.root}done/{chunk}"


def gpu_queue(node: str, index: int) -> str:
    """Name of the Celery queue that feeds one GPU's worker."""
    return f"corral.gpu.{node}.{index}"


# kombu's Redis transport keeps one list per priority step; lower numbers are taken first.
PRIORITY_STEPS = [0, 3]
URGENT, NORMAL = 0, 3
_PRIORITY_SEP = "\x06\x16"


def gpu_queue_lists(node: str, index: int) -> list[str]:
    """The Redis lists behind one GPU queue, one per priority step."""
    name = gpu_queue(node, index)
    return [name if step == 0 else f"{name}{_PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


BLOB = "$blob"  # args {"$blob": key}: kept in the blob store, not in the task record
INGRESS_QUEUE = "corral.ingress"
STATUS_QUEUE = "corral.status"
SUBMIT_TASK = "corral.submit"
SESSION_TASK = "corral.session"
ADMIN_TASK = "corral.admin"
RUN_TASK = "corral.run"
WARM_TASK = "corral.warm"

# The algorithms every GPU worker ships (corral/tasks: builtin, media, sink). The scheduler
# accepts these before any node has registered; others once a registered node offers them.
JOB_ALGORITHM = "corral.job"  # accepted only when a registered node runs command jobs (CORRAL_JOBS)
BUILTIN_ALGORITHMS = frozenset({
    "corral.echo", "corral.sleep", "corral.fail", "corral.crash", "corral.probe", "corral.count",
    "corral.model", "corral.batch",
    "vision.bright", "vision.faces", "text.words", "corral.sink",
})
