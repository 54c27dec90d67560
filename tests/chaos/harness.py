"""The chaos harness: real processes, real faults, and a checker over the recorded history.

A local cluster (3 etcd members, 3 schedulers each on its own network host when network
namespaces are available, 2 nodes) runs a stream of tasks with known results while a
seeded schedule of faults hits it: leader SIGKILL, leader SIGSTOP past its lease, leader
cut off from etcd and Redis, GPU worker SIGKILL, node SIGKILL, etcd member SIGKILL. Then
the checker reads every task record and result and asserts the invariants: every
submitted task ends in exactly one terminal state, none is lost, no task has more than
one recorded outcome, every result is the expected one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.client import Client, Handle
from corral.local import LocalCluster
from corral.netns import available as netns_available

SUBMIT_TRIES = 100  # 20 s of a cluster that refuses submits, at most


@dataclass(frozen=True)
class Plan:
    tasks: int = 3000
    leader_kills: int = 5
    leader_pauses: int = 1
    partitions: int = 1
    worker_kills: int = 10
    node_kills: int = 1
    etcd_kills: int = 1
    redis_restarts: int = 1
    seed: int = 1
    gap: float = 1.0  # seconds between faults

    def faults(self) -> list[str]:
        names = (["leader_kill"] * self.leader_kills + ["leader_pause"] * self.leader_pauses
                 + ["partition"] * self.partitions + ["worker_kill"] * self.worker_kills
                 + ["node_kill"] * self.node_kills + ["etcd_kill"] * self.etcd_kills
                 + ["redis_restart"] * self.redis_restarts)
        random.Random(self.seed).shuffle(names)
        return names


@dataclass
class Report:
    submitted: int = 0
    states: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    duplicate_outcomes: list[str] = field(default_factory=list)
    wrong_results: list[str] = field(default_factory=list)
    faults: list[tuple[float, str, str]] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    resubmits: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.duplicate_outcomes and not self.wrong_results
                and self.states == Counter({"SUCCEEDED": self.submitted}))

    def summary(self) -> str:
        kinds = Counter(kind for _, kind, _ in self.faults)
        return "\n".join([
            f"chaos: {self.submitted} tasks in {self.seconds:.0f} s under {len(self.faults)} faults "
            f"({', '.join(f'{k} x{v}' for k, v in sorted(kinds.items()))})",
            f"  terminal states: {dict(self.states)}",
            f"  attempts: {dict(self.attempts)}",
            f"  submits made again: {len(self.resubmits)}"
            + (f" (first: {self.resubmits[0]})" if self.resubmits else ""),
            f"  lost: {len(self.lost)}, duplicate outcomes: {len(self.duplicate_outcomes)}, "
            f"wrong results: {len(self.wrong_results)}",
            f"  verdict: {'OK' if self.ok else 'VIOLATED'}",
        ])


def check(handles: dict[str, Any], records: dict[str, dict[str, Any]], client: Client) -> Report:
    """The invariants, over what etcd and the result store recorded."""
    report = Report(submitted=len(handles))
    for task_id, expected in handles.items():
        record = records.get(task_id)
        if record is None:
            report.lost.append(task_id)
            continue
        report.states[record["state"]] += 1
        report.attempts.update(a["state"] for a in record["attempts"])
        outcomes = [a for a in record["attempts"] if a["state"] == "SUCCEEDED"]
        if len(outcomes) > 1:
            report.duplicate_outcomes.append(task_id)
        if record["state"] == "SUCCEEDED" and client.result(record) != expected:
            report.wrong_results.append(task_id)
    return report


class Chaos:
    def __init__(self, state_dir: str | Path, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.netns = netns_available()
        self.cluster = LocalCluster(state_dir, nodes=2, gpus=2, schedulers=3, etcd_members=3,
                                    flower=False, netns=self.netns)
        self.report_faults: list[tuple[float, str, str]] = []
        self.resubmits: list[str] = []  # why a submit was made again

    # ---------------------------------------------------------------- run

    def run(self, log: Any = print) -> Report:
        started = time.monotonic()
        self.cluster.start()
        try:
            client = Client(self.cluster.settings)
            expected: dict[str, Any] = {}
            handles: list[Handle] = []
            faults = self.plan.faults()
            pace = self.plan.tasks / max(10.0, len(faults) * (self.plan.gap + 3.0))
            failed: list[BaseException] = []  # what stopped the producer, for this thread to raise

            def produce() -> None:
                try:
                    for i in range(self.plan.tasks):
                        args = {"i": i, "check": self.rng.randrange(10**9)}
                        h = submit(args)
                        expected[h.id] = args
                        handles.append(h)
                        time.sleep(1.0 / pace)
                except BaseException as exc:
                    failed.append(exc)

            def submit(args: dict[str, Any]) -> Handle:
                """As a user would: a submit that fails while etcd or Redis is away is made
                again, under the same id (a second copy that did get through is ignored)."""
                task_id = uuid.uuid4().hex
                for _ in range(SUBMIT_TRIES):
                    try:
                        return client.submit("corral.echo", args, task_id=task_id)
                    except Exception as exc:
                        self.resubmits.append(f"{type(exc).__name__}: {str(exc)[:80]}")
                        time.sleep(0.2)
                raise AssertionError(f"no submit went through in {SUBMIT_TRIES} tries: {self.resubmits[-1]}")

            producer = threading.Thread(target=produce, daemon=True, name="chaos-producer")
            producer.start()
            time.sleep(2)
            for fault in faults:
                detail = getattr(self, fault)(client)
                self.report_faults.append((time.monotonic() - started, fault, detail))
                log(f"[{time.monotonic() - started:6.1f} s] {fault}: {detail}")
                time.sleep(self.plan.gap)
            producer.join()
            if failed:
                raise failed[0]
            records = client.wait(handles, timeout=600)
            report = check(expected, records, client)
            report.faults = self.report_faults
            report.resubmits = self.resubmits
            report.seconds = time.monotonic() - started
            client.close()
            return report
        finally:
            self.cluster.stop()

    # ------------------------------------------------------------- faults

    def _leader(self, client: Client, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = client.status()["leader"]["id"]
            if leader:
                return str(leader)
            time.sleep(0.05)
        raise AssertionError("no leader")

    def _new_leader(self, client: Client, old: str, timeout: float = 15) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            leader = client.status()["leader"]["id"]
            if leader and leader != old:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"no new leader within {timeout} s after {old}")

    def leader_kill(self, client: Client) -> str:
        old = self._leader(client)
        self.cluster.kill(old, signal.SIGKILL)
        took = self._new_leader(client, old)
        self.cluster.restart(old)
        return f"SIGKILL {old}; new leader in {took:.2f} s"

    def leader_pause(self, client: Client) -> str:
        old = self._leader(client)
        pid = self.cluster.proc(old).pid
        os.kill(pid, signal.SIGSTOP)
        try:
            took = self._new_leader(client, old)
            time.sleep(1.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"SIGSTOP {old}; new leader in {took:.2f} s; SIGCONT"

    def partition(self, client: Client) -> str:
        old = self._leader(client)
        if not self.netns:
            return self.leader_pause(client) + " (no network namespaces here: paused instead)"
        self.cluster.partition(old)
        try:
            took = self._new_leader(client, old)
            time.sleep(2.0)
        finally:
            self.cluster.heal(old)
        return f"cut {old} off from etcd and Redis; new leader in {took:.2f} s; healed"

    def worker_kill(self, client: Client) -> str:
        node = self.rng.choice([p for p in self.cluster.procs if p.role == "node"])
        workers = _children(node.pid)
        if not workers:
            return f"no worker on {node.name} right now"
        victim = self.rng.choice(workers)
        pool = _children(victim)
        if pool and self.rng.random() < 0.5:
            victim = self.rng.choice(pool)  # the process running the task
        os.kill(victim, signal.SIGKILL)
        return f"SIGKILL pid {victim} on {node.name}"

    def node_kill(self, client: Client) -> str:
        node = self.rng.choice([p for p in self.cluster.procs if p.role == "node"])
        self.cluster.kill(node.name, signal.SIGKILL)
        time.sleep(4.0)
        self.cluster.restart(node.name)
        return f"SIGKILL process group of {node.name}; restarted after 4 s"

    def etcd_kill(self, client: Client) -> str:
        member = self.rng.choice([p for p in self.cluster.procs if p.role == "etcd"])
        self.cluster.kill(member.name, signal.SIGKILL)
        time.sleep(3.0)
        self.cluster.restart(member.name)
        return f"SIGKILL {member.name}; restarted after 3 s"

    def redis_restart(self, client: Client) -> str:
        """The broker dies (SIGKILL) and comes back on the same port with the same command
        line, as a supervisor restarts it; its append-only file keeps what it had."""
        self.cluster.kill("redis", signal.SIGKILL)
        time.sleep(1.5)
        self.cluster.restart("redis")
        return "SIGKILL redis; restarted after 1.5 s"


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []
