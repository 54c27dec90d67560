"""Diagnostic algorithms (docs/contracts.md, Diagnostic algorithms)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from corral.tasks.context import Context
from corral.tasks.registry import algorithm


@algorithm("corral.echo")
def echo(args: Any, ctx: Context) -> Any:
    return args


MAX_SLEEP = 3600.0  # a diagnostic does not hold a GPU for longer


@algorithm("corral.sleep")
def sleep(args: dict[str, Any], ctx: Context) -> dict[str, float]:
    seconds = min(float((args or {}).get("seconds", 1.0)), MAX_SLEEP)
    time.sleep(seconds)
    return {"slept": seconds}


class AlgorithmFailed(RuntimeError):
    """Raised on purpose by corral.fail."""


@algorithm("corral.fail")
def fail(args: dict[str, Any], ctx: Context) -> Any:
    """Raise `message`. Optional: only on `nodes`, only for the `first` N attempts."""
    args = args or {}
    nodes = args.get("nodes")
    first = args.get("first")
    if (nodes is None or ctx.node in nodes) and (first is None or ctx.number <= int(first)):
        raise AlgorithmFailed(str(args.get("message", "corral.fail was asked to fail")))
    return {"node": ctx.node, "gpu": ctx.gpu, "number": ctx.number}


@algorithm("corral.crash")
def crash(args: Any, ctx: Context) -> Any:
    """Kill the worker process running it (SIGKILL): what a segfaulting extension, the
    kernel's OOM killer or a poison input does. Optional: only for the `first` N attempts."""
    first = (args or {}).get("first") if isinstance(args, dict) else None
    if first is None or ctx.number <= int(first):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"node": ctx.node, "gpu": ctx.gpu, "number": ctx.number}


@algorithm("corral.probe")
def probe(args: Any, ctx: Context) -> dict[str, Any]:
    """Where the call ran; `ran_at`, when it began (this host's clock), is first: the
    submit-to-start benchmarks read it as raw Celery's task reports its own start."""
    return {
        "ran_at": time.time(),
        "node": ctx.node,
        "gpu": ctx.gpu,
        "cuda_visible_devices": ctx.cuda_visible_devices,
        "pid": os.getpid(),
        "simulated": os.environ.get("CORRAL_GPU_SIMULATED", "0") == "1",
        "gpu_uuid": os.environ.get("CORRAL_GPU_UUID", ""),
        "gpu_model": os.environ.get("CORRAL_GPU_MODEL", ""),
    }


@algorithm("corral.batch", batch=32)
def batch(inputs: list[Any], ctx: Context) -> list[dict[str, Any]]:
    """A batch-capable diagnostic: each input back, with the size of the call it ran in. An
    input {"fail": MESSAGE} makes the whole call raise, as a model does on a bad input."""
    for one in inputs:
        if isinstance(one, dict) and one.get("fail"):
            raise ValueError(str(one["fail"]))
    return [{"echo": one, "batch": len(inputs)} for one in inputs]


@algorithm("corral.count", checkpointable=True)
def count(args: dict[str, Any], ctx: Context) -> dict[str, int]:
    """Count to `to`, a step every `step_seconds`; save a checkpoint every `checkpoint_every`
    steps and whenever one is asked for; resume from the latest one."""
    args = args or {}
    to = int(args.get("to", 10))
    step = float(args.get("step_seconds", 0.0))
    every = int(args.get("checkpoint_every", 0) or 0)
    start = int((ctx.checkpoint or {}).get("count", 0))
    n = start
    while n < to:
        if step:
            time.sleep(step)
        n += 1
        if (every and n % every == 0) or ctx.checkpoint_requested():
            ctx.save_checkpoint({"count": n})
    return {"count": n, "resumed_from": start}


def _load_model() -> dict[str, Any]:
    """Stands in for loading weights onto the GPU: CORRAL_MODEL_SETUP_SECONDS (default 2)."""
    seconds = float(os.environ.get("CORRAL_MODEL_SETUP_SECONDS", "2"))
    time.sleep(seconds)
    return {"loaded_at": time.time(), "setup_seconds": seconds, "pid": os.getpid()}


@algorithm("corral.model", setup=_load_model)
def model(args: Any, ctx: Context) -> dict[str, Any]:
    """A task on a 'model' whose setup() takes seconds: shows the value of warm workers."""
    return {"model_loaded_at": ctx.state["loaded_at"], "pid": ctx.state["pid"], "args": args}
