"""Batch-capable algorithms (M11): one call for many inputs, each still its own task.

A GPU message may carry several attempts (a bundle), claimed together when it starts
(tasks/runner.py). Consecutive members for the same batch-capable algorithm
(`@algorithm(..., batch=N)`) run in one call, `fn([args, ...], ctx)`, which returns one
result per input. Every member keeps its own attempt, fence and outcome. When the call
raises, the inputs are run again one per call, so that an input that makes the model raise
fails only its own task, with the model's error, and its neighbours succeed. Each outcome
carries `ran`, the call's time per input, which the leader uses to size the next calls.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from corral.base.config import Settings
from corral.base.errors import error_info
from corral.tasks import registry, starts
from corral.tasks.context import Context
from corral.tasks.registry import Algorithm
from corral.tasks.runner import (
    SIMULATED_CUDA_ERROR,
    Event,
    Process,
    SimulatedGpuFault,
    Worker,
    load_args,
    report,
    where,
)
from corral.tasks.status import publish

Outcome = tuple[bool, Any]  # (True, the result as JSON) or (False, an error record)


def calls(members: list[dict[str, Any]]) -> Iterator[tuple[list[dict[str, Any]], Algorithm | None]]:
    """A message's members in order: runs of one batch-capable algorithm (with that
    algorithm), and single attempts (with None). A member that waits for upstream results
    (`inputs`) runs on its own."""
    i = 0
    while i < len(members):
        algo = _batch_capable(members[i])
        group = [members[i]]
        if algo is not None:
            while i + len(group) < len(members) and len(group) < algo.batch and \
                    _batch_capable(members[i + len(group)]) is algo:
                group.append(members[i + len(group)])
        i += len(group)
        yield group, (algo if len(group) > 1 else None)


def _batch_capable(msg: dict[str, Any]) -> Algorithm | None:
    if msg.get("inputs"):
        return None
    try:
        algo = registry.get(str(msg.get("algorithm")))
    except KeyError:
        return None
    return algo if algo.batch > 1 else None


def execute_many(settings: Settings, run: list[tuple[dict[str, Any], Event]], algo: Algorithm,
                 began: float, last: bool = True) -> None:
    """One call for claimed attempts of one batch-capable algorithm; an outcome for each."""
    assert Process.beat is not None
    beat = Process.beat
    node, gpu = where(run[0][0])
    beat.beat_for(lambda kind: [e(kind) for _, e in run], first=starts.first_beat(run[0][1]))
    clock = time.monotonic()
    try:
        if os.environ.get("CORRAL_FAULTY") == "1":
            fault = error_info(SimulatedGpuFault(SIMULATED_CUDA_ERROR.format(node=node, gpu=gpu)))
            outcomes: list[Outcome] = [(False, fault)] * len(run)
        else:
            first = run[0][0]
            ctx = Context(task_id=first["task_id"], attempt_id=first["attempt_id"], node=node, gpu=gpu,
                          session=first.get("session", ""), number=int(first.get("number", 1)),
                          state=algo.warm(), gpus=[gpu], worker=Worker(settings, Process.redis))
            outcomes = call(algo, [m for m, _ in run], ctx)
    finally:
        beat.stop_beating()
    ran = (time.monotonic() - clock) / len(run)
    assert Process.blobs is not None
    blobs = Process.blobs
    # Stamped now: the write may go out later, with the next member's.
    events = [event("succeeded", ran=ran, began=began) if ok else event("failed", error=value, began=began)
              for (_, event), (ok, value) in zip(run, outcomes, strict=True)]

    def outcomes_of(pipe: Any) -> None:  # every result and outcome: one round trip
        for (msg, _), (ok, value), done in zip(run, outcomes, events, strict=True):
            if ok:
                done["result_ref"] = blobs.put_result(msg["task_id"], msg["attempt_id"], value, pipe)
            publish(pipe, done)

    report(outcomes_of, last, *(m["attempt_id"] for m, _ in run))


def call(algo: Algorithm, msgs: list[dict[str, Any]], ctx: Context) -> list[Outcome]:
    """Run the inputs in one call; if it raises, one call per input (an input that makes the
    model raise fails alone)."""
    try:
        values = algo.fn([load_args(m.get("args")) for m in msgs], ctx)
        if not isinstance(values, list) or len(values) != len(msgs):
            got = f"{len(values)} results" if isinstance(values, list) else type(values).__name__
            raise TypeError(f"batch algorithm {algo.name} returned {got} for {len(msgs)} inputs")
    except Exception as exc:
        if len(msgs) == 1:
            return [(False, error_info(exc))]
        return [call(algo, [m], ctx)[0] for m in msgs]
    out: list[Outcome] = []
    for value in values:
        try:
            out.append((True, json.dumps(value)))  # a result that is not JSON fails its task alone
        except (TypeError, ValueError) as exc:
            out.append((False, error_info(exc)))
    return out
