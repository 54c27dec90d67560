"""Raw Celery baseline for bench/throughput.py: the same worker settings as corral's GPU
workers (JSON, acks_late, prefetch 1, concurrency 1), a trivial task, results in Redis."""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("raw", broker=os.environ["RAW_BROKER"], backend=os.environ["RAW_BROKER"])
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
)


@app.task(name="raw.echo")
def echo(args: dict) -> dict:
    return {"started": time.time(), "args": args}


@app.task(name="raw.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


_MODEL = None


@app.task(name="raw.embed")
def embed(text: str) -> list[float]:
    """bench/embed.py: all-MiniLM-L6-v2, loaded once per worker process, one text per task."""
    global _MODEL
    if _MODEL is None:
        from corral.tasks.embeddings import load

        _MODEL = load()
    return _MODEL.embed([text])[0].tolist()
