"""Finished records leave etcd for the history store, a few chunks per tick.

Each batch is put in the history store first, then, in one fenced transaction, its
summaries go into a `done/` chunk and its records are deleted from etcd. A leader that
dies between the two leaves them in etcd, and the next one puts them again: the same record
under the same id, never two (corral/base/history.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from corral.base.history import HistoryStore
from corral.base.keys import Keys
from corral.scheduler.core import Core

CHUNKS = 8  # batches moved per tick at most (99 tasks each)


def archive(core: Core, history: HistoryStore, keys: Keys, write: Callable[[dict[str, Any]], None],
            now: float) -> None:
    """Move what the core says is ready; raises HistoryError while that store does not answer
    (the records stay in etcd until it does)."""
    for _ in range(CHUNKS):
        batch = core.archive_batch(now)
        if batch is None:
            return
        history.put_many(batch.records)
        writes: dict[str, Any] = {keys.task(r["id"]): None for r in batch.records}
        writes[keys.done(batch.name)] = batch.chunk
        write(writes)
        core.archived(batch)
