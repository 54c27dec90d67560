"""What the leader does with a message's submissions before its core sees them: args too
big for etcd go to the blob store, and ids the core does not know are asked about in the
history store. Each is one Redis round trip for the whole message, or none."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import redis

from corral.base.blobs import BlobStore
from corral.base.config import Settings
from corral.base.history import HistoryError, HistoryStore
from corral.base.keys import BLOB
from corral.scheduler.core import Core
from corral.scheduler.ingress import Rejection, Submission, readable

log = logging.getLogger("corral.scheduler")


def offload(requests: list[Any], settings: Settings, client: redis.Redis, blobs: BlobStore) -> list[Any]:
    """Args larger than `args_in_etcd` go to the blob store before their task is
    recorded; the record keeps `{"$blob": key}` and the worker reads them back. etcd then
    holds what is small whatever producers send; they expire with results
    (`CORRAL_RESULT_TTL`). If Redis fails, those tasks are rejected with that reason:
    their producer may resend them."""
    big = [r for r in requests if type(r) is Submission and r.size > settings.args_in_etcd]
    if not big:
        return requests
    keys = {}
    moved = {id(r) for r in big}
    try:
        with client.pipeline(transaction=False) as pipe:
            for r in big:
                keys[r.task_id] = blobs.args_key(r.task_id)
                pipe.set(keys[r.task_id], json.dumps(r.args, separators=(",", ":")), ex=settings.result_ttl)
            pipe.execute()
    except redis.RedisError as exc:
        return [Rejection(r.task_id, readable(f"its args could not be stored, Redis failed ({exc}); "
                                              "submit it again"), r.algorithm, r.session)
                if id(r) in moved else r for r in requests]
    return [dataclasses.replace(r, args={BLOB: keys[r.task_id]}) if id(r) in moved else r
            for r in requests]


def recall(requests: list[Any], core: Core, history: HistoryStore) -> None:
    """Ask the history store, in one round trip, about the ids these submissions name
    (their own and their upstream tasks') that the core does not know, and tell the core
    what it finds: one that finished before the dedup window is still a duplicate, or
    still an upstream with an outcome. A fresh id (one its producer made up for this
    submission, as the client does) is not asked about: no earlier task has it, and a
    resend of it within the window is caught in memory; a lone task then reaches its GPU
    without this round trip. If the store cannot answer (Redis restarting, say), they are
    taken as new: the window in memory still catches the duplicates of its last minutes,
    and refusing new work for a store's blip would lose more than it guards."""
    known = core.known
    asked = {r.task_id for r in requests if type(r) is Submission and not r.fresh and not known(r.task_id)}
    asked.update(u for r in requests if type(r) is Submission and r.after
                 for u in r.after.values() if not known(u))
    if not asked:
        return
    ids = sorted(asked)
    try:
        found = [r for r in history.get_many(ids) if r is not None]
    except HistoryError as exc:
        log.warning("%s: %d id(s) taken as new without asking it", exc, len(ids))
        return
    if found:
        core.recall(found)
