"""What to do after an attempt fails: retry here, move to another host, or give up.

A task's policy (`corral.base.retry.RetryPolicy`) gives it 1 + `local` tries on each GPU
(each local retry a new attempt the leader sends to the same GPU, after the back-off); it
then moves, to another host whenever one has room, never to a GPU it failed on, up to
`hosts` placements in all; then it is FAILED with its whole attempt history. A device fault
(a CUDA or Xid error) is never retried on the same GPU: the GPU, not the task, is the suspect.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.base.errors import is_device_error
from corral.base.retry import DEFAULT, RetryPolicy
from corral.scheduler.records import FAILED, Attempt, Task


@dataclass(frozen=True)
class LocalRetry:
    """Try again on the same GPU, `wait` seconds from now."""

    wait: float = 0.0


@dataclass(frozen=True)
class Reassign:
    avoid_gpus: frozenset[tuple[str, int]]
    avoid_hosts: frozenset[str]


@dataclass(frozen=True)
class GiveUp:
    reason: str


Decision = LocalRetry | Reassign | GiveUp


def stints(attempts: list[Attempt]) -> list[list[Attempt]]:
    """Failed attempts grouped into runs on one GPU; a move (to another host when there is
    one) starts a new run and spends one unit of the `hosts` budget."""
    out: list[list[Attempt]] = []
    for a in attempts:
        if a.state != FAILED:
            continue
        if out and (out[-1][-1].node, out[-1][-1].gpu) == (a.node, a.gpu):
            out[-1].append(a)
        else:
            out.append([a])
    return out


def decide(task: Task, failed: Attempt) -> Decision:
    policy = policy_of(task)
    runs = stints(task.attempts)
    here = runs[-1] if runs else [failed]
    if not is_device_error(failed.error) and len(here) <= policy.local:
        return LocalRetry(policy.delay(len(here)))
    return move(task)


def move(task: Task) -> Reassign | GiveUp:
    """Leave the GPU of the last stint: to another host while the budget lasts."""
    policy = policy_of(task)
    runs = stints(task.attempts)
    if len(runs) >= policy.hosts:
        tries = sum(len(r) for r in runs)
        return GiveUp(f"failed {tries} time(s) on {len(runs)} GPU(s); retry budget "
                      f"local={policy.local} hosts={policy.hosts} is spent")
    failed_attempts = [a for a in task.attempts if a.state == FAILED]
    return Reassign(
        avoid_gpus=frozenset((a.node, a.gpu) for a in failed_attempts),
        avoid_hosts=frozenset(a.node for a in failed_attempts),
    )

def policy_of(task: Task) -> RetryPolicy:
    """The task's policy; a record written under other bounds keeps the defaults."""
    try:
        return RetryPolicy.parse(task.retry or None)
    except ValueError:
        return DEFAULT
