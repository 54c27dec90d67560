"""One harness for driving the scheduler core in unit tests: no etcd, no broker.

Inputs go in through the Core's public methods (submit, status, nodes_changed, route,
tick); tests observe the effects it emits and the records and summary it keeps.
"""

from __future__ import annotations

from typing import Any

from corral.scheduler.core import Core, Effects, Policy
from corral.scheduler.ingress import Submission

ONE_NODE = {"node-1": {"gpus": [{"index": 0}, {"index": 1}], "algorithms": ["corral.echo"]}}
TWO_NODES = {
    "n1": {"gpus": [{"index": 0}, {"index": 1}], "algorithms": ["a"]},
    "n2": {"gpus": [{"index": 0}, {"index": 1}], "algorithms": ["a"]},
}
DEVICE = {"type": "SimulatedGpuFault", "message": "CUDA error: illegal memory access"}
APP = {"type": "ValueError", "message": "bad input"}


def policy(**overrides: Any) -> Policy:
    """The policy the settings' defaults give, with `overrides`."""
    return Policy.from_settings(**overrides)


def make(nodes: dict[str, Any] | None = TWO_NODES, **overrides: Any) -> Core:
    """A core whose `nodes` have registered, at time 0."""
    core = Core(policy(**overrides))
    if nodes is not None:
        core.nodes_changed(nodes, 0.0)
    return core


def submit(core: Core, tid: str, algorithm: str = "a", session: str = "s", *, local: int = 2,
           hosts: int = 3, backoff: float = 0.0, after: dict[str, str] | None = None,
           args: Any = None, now: float = 1.0, ack: Any = None) -> None:
    retry = {"local": local, "hosts": hosts, "backoff": backoff}
    core.submit(Submission(tid, algorithm, {} if args is None else args, session, retry=retry,
                           after=after), now, ack)


def move_finished(core: Core, now: float) -> None:
    """Retire what has finished and move it to history, as the shell would (every move confirmed)."""
    core.tick(now)
    while (batch := core.archive_batch(now)) is not None:
        core.archived(batch)


def report(core: Core, tid: str, kind: str, now: float = 2.0, **extra: Any) -> None:
    """A status event of the task's current attempt, as its worker sends it."""
    attempt = core.tasks[tid].attempts[-1]
    core.status({"kind": kind, "task_id": tid, "attempt_id": core.tasks[tid].current_attempt,
                 "node": attempt.node, "gpu": attempt.gpu, "time": now, **extra}, now, None)


def where(core: Core, tid: str) -> tuple[str, int]:
    """The GPU of the task's latest attempt."""
    a = core.tasks[tid].attempts[-1]
    return a.node, a.gpu


def running(core: Core, tid: str = "t", **retry: Any) -> tuple[str, int]:
    """Submit a task, route it and have its worker start it; returns its GPU."""
    submit(core, tid, **retry)
    core.route(1.0)
    report(core, tid, "started", now=1.2)
    return where(core, tid)


def sent(fx: Effects, tid: str | None = None) -> list[dict[str, Any]]:
    """The attempt messages of these effects (batches opened), or those of one task."""
    out = [m for d in fx.dispatches if not d.warm for m in d.message.get("batch") or [d.message]]
    return out if tid is None else [m for m in out if m["task_id"] == tid]
