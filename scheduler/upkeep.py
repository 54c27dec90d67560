"""The leader's upkeep of etcd, in a thread of its own: compaction of the revision history,
defragmentation near the admission mark (revisions.py decides both), and expiry of old rows
of an SQL history store."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from corral.base.etcd import connect
from corral.scheduler import revisions

if TYPE_CHECKING:
    from corral.scheduler.service import Scheduler

log = logging.getLogger("corral.scheduler")


def keep_etcd_small(svc: Scheduler) -> None:
    """While leading: compact etcd's revision history, defragment near the admission
    mark (revisions.py), and expire old rows of an SQL history store."""
    every = min(revisions.EVERY, max(0.5, svc.settings.etcd_history / 4))
    kept = revisions.Revisions(svc.settings.etcd_history)
    high = svc.policy.etcd_high_water
    last_defrag: float | None = None
    next_expiry = 0.0
    while not svc.stopping.wait(every):
        if svc.token is None:
            kept = revisions.Revisions(svc.settings.etcd_history)  # a new term starts afresh
            continue
        try:
            status = svc.etcd.status()
            db_bytes = int(status.db_size)
            target = kept.mark(time.monotonic(), svc.etcd.get_response(svc.keys.leader).header.revision,
                               pressed=revisions.pressed(db_bytes, high))
            if target is not None:
                svc.etcd.compact(target)
                log.debug("etcd history compacted up to revision %d", target)
            if target is not None and revisions.defrag_due(db_bytes, high, time.monotonic(), last_defrag):
                last_defrag = time.monotonic()
                _defragment(svc, db_bytes)
            if time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + 60.0
                svc.history.expire(time.time() - svc.settings.task_retention)
        except Exception as exc:  # compacted already, or etcd away: the next round retries
            log.info("etcd upkeep skipped: %s", exc)

def _defragment(svc: Scheduler, db_bytes: int) -> None:
    """Defragment every etcd member, one at a time (revisions.py says why and when)."""
    log.warning("etcd's file is %d bytes, near the admission mark (%d): defragmenting each member",
                db_bytes, svc.policy.etcd_high_water)
    for host, port in svc.settings.etcd_endpoints:
        member = connect(svc.settings.with_(etcd=f"{host}:{port}"), timeout=60.0)
        try:
            started = time.monotonic()
            member.defragment()
            log.warning("etcd member %s:%d defragmented in %.0f ms: %d bytes", host, port,
                        (time.monotonic() - started) * 1000, int(member.status().db_size))
        except Exception as exc:
            log.warning("defragmenting etcd member %s:%d failed: %s", host, port, exc)
        finally:
            member.close()
