"""Waiting for tasks to finish: a read of their records, then a watch from its revision.

No polling: the records come as etcd changes them. A few tasks are read and watched by
their own keys, so waiting for one costs the same however many other tasks the cluster
holds; many (a map) by one paged read of the task prefix, then one watch of it. Those not
in etcd are looked up in the history store in one round trip: many at once (the lookup
may outlast the revision history etcd keeps, and a watch from a compacted revision
fails), a few QUIET seconds after their watch started unless it has shown them (a task
submitted just now shows up in etcd first, and needs no lookup). A watch that has shown
nothing for RECHECK seconds is not trusted further: the records are read again (an event a
watch lost, or a lookup that came before the record reached the history store, then costs
seconds, not the whole wait).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any

from corral.base.etcd import snapshot
from corral.control import TERMINAL

FEW = 32  # up to this many tasks are watched by their own keys rather than the task prefix
QUIET = 0.05  # seconds a few tasks absent from etcd get to show up in the watch before a lookup
RECHECK = (5.0, 60.0)  # seconds without an event before a few tasks, or many, are read again

Finished = Callable[[list[str]], list[dict[str, Any] | None]]


def wait_for(etcd: Any, prefix: str, waiting: set[str], finished: Finished,
             timeout: float | None = None, progress: Any = None) -> dict[str, dict[str, Any]]:
    """Records of the tasks `waiting` names (ids under `prefix`), once all are terminal.
    `finished`: the history store's lookup. Raises TimeoutError after `timeout` seconds."""
    done: dict[str, dict[str, Any]] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    updates: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def take(task_id: str, raw: bytes | None) -> None:
        if task_id in waiting and raw:
            settle(task_id, json.loads(raw))

    def settle(task_id: str, record: dict[str, Any] | None) -> None:
        if record is not None and record.get("state") in TERMINAL:
            done[task_id] = record
            waiting.discard(task_id)

    while waiting:
        few = len(waiting) <= FEW
        if few:  # watched from the oldest read's revision: a change reaches it, twice at worst
            revisions, absent = [], []
            for task_id in list(waiting):
                response = etcd.get_response(prefix + task_id)
                revisions.append(response.header.revision)
                raw = response.kvs[0].value if response.kvs else None
                take(task_id, raw)
                if raw is None:
                    absent.append(task_id)
            revision = min(revisions)
        else:
            records, revision = snapshot(etcd, prefix)
            for task_id, raw in records.items():
                take(task_id, raw)
            absent = [t for t in waiting if t not in records]
        # Those absent moved to history already, or are not yet recorded (the watch sees
        # them come). They are looked up once the watch has started: many at once (the
        # lookup may outlast the revision history etcd keeps, and a watch from a
        # compacted revision fails), a few QUIET seconds after the watch started unless it
        # has shown them by then (a task submitted just now is recorded first: no lookup).
        if not waiting:
            break
        if few:
            watches = [etcd.add_watch_callback(prefix + t, updates.put, start_revision=revision + 1)
                       for t in waiting]
        else:
            watches = [etcd.add_watch_prefix_callback(prefix, updates.put,
                                                           start_revision=revision + 1)]
        try:
            if absent and not few:
                for task_id, record in zip(absent, finished(absent), strict=True):
                    settle(task_id, record)
                absent = []
            look_up_at = time.monotonic() + QUIET
            recheck = RECHECK[0 if few else 1]
            recheck_at = time.monotonic() + recheck
            while waiting:
                if progress is not None:
                    progress(len(done))
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"task {next(iter(waiting))} not finished within {timeout} s"
                                       if len(waiting) == 1 else
                                       f"{len(waiting)} tasks not finished within {timeout} s")
                patience = min(1.0, left) if left is not None else 1.0
                now = time.monotonic()
                if now >= recheck_at:
                    break  # nothing for a while: read the records again, watch again
                if absent and now >= look_up_at:
                    late, absent = [t for t in absent if t in waiting], []
                    for task_id, record in zip(late, finished(late), strict=True):
                        settle(task_id, record)
                    continue
                try:
                    response = updates.get(timeout=min(patience, look_up_at - now) if absent else patience)
                except queue.Empty:
                    continue
                if response is None or isinstance(response, Exception):
                    break  # the watch died (etcd member lost): read again, watch again
                recheck_at = time.monotonic() + recheck
                for event in response.events:
                    task_id = event.key.decode()[len(prefix):]
                    take(task_id, event.value)
                    if absent and task_id in absent:
                        absent.remove(task_id)  # recorded: not in the history store
        finally:
            for watch in watches:
                etcd.cancel_watch(watch)
    if progress is not None:
        progress(len(done))
    return done
