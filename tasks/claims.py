"""Attempts claimed as a GPU worker's main process takes their message, not after.

A worker claims each attempt's fence (corral/base/fence.py) before it runs it. Its main
process already writes to Redis once for every message it takes (kombu's record of an
unacknowledged delivery, corral/base/transport.py); the claims of the message's attempts
go in that same Lua call, so the child that runs the message starts without a round trip
of its own.

The message goes on to the child with a ticket in a header (Celery hands its headers to
the task as its request) and a token only this worker's processes know (made in the main
process, inherited by the child it forks): a ticket that came with the message from anywhere
else is not believed, and the child claims for itself. The main process posts the verdicts
under the ticket to a slot of memory it shares with the child, as the answer comes: in a
worker's event loop the claim is not waited for, so the message is handed on at once and
the answer typically arrives before the child has finished taking it. The child waits for
its ticket there; if the answer never comes (Redis lost the connection meanwhile) it claims
for itself, and an attempt its main process did claim is then found `duplicate` and not
run: the leader retries it once its heartbeats are missed, so nothing runs twice.

A claim records the process that will run the attempt, the pool's one child, which
registers its pid as it starts; while no live child is registered (a child being replaced,
a pool without children) the main process claims nothing and the child claims as before.
"""

from __future__ import annotations

import itertools
import json
import logging
import mmap
import secrets
import struct
import time
from typing import Any

from corral.base import fence
from corral.base.keys import RUN_TASK
from corral.base.process import alive
from corral.base.transport import Swaps

log = logging.getLogger("corral.claims")

HEADER = "corral_claimed"  # the message header that carries the verdicts to the child
_TOKEN = secrets.token_hex(16)  # made at import, in the main process, before it forks
_CHILD = mmap.mmap(-1, 8)  # shared with the children it forks: the pid of the running one
# Shared the same way: the verdicts of the latest ticket (ticket u64, count u32, one code
# byte per attempt), written by the main process ticket last, read by the child.
SLOT_ATTEMPTS = 4096
_SLOT = mmap.mmap(-1, 16 + SLOT_ATTEMPTS)
_TICKETS = itertools.count(1)
CODES: tuple[fence.Verdict, ...] = ("run", "superseded", "lost", "forged", "duplicate")
WAIT = 10.0  # seconds a child waits for its ticket's verdicts before it claims for itself


def register_child(pid: int) -> None:
    """In the pool's child, as it starts: the process the main process claims for."""
    _CHILD.seek(0)
    _CHILD.write(struct.pack("q", pid))


def _child() -> int | None:
    pid = struct.unpack("q", _CHILD[:8])[0]
    return pid if pid > 0 and alive(pid) else None


def members(kwargs: Any) -> list[dict[str, Any]]:
    """The attempts a run message holds that a worker runs (tasks/runner.py's register):
    each with its task and attempt id; a batch (M11) holds several."""
    if not isinstance(kwargs, dict):
        return []
    batch = kwargs["batch"] if isinstance(kwargs.get("batch"), list) else [kwargs]
    return [one for one in batch if isinstance(one, dict) and isinstance(one.get("task_id"), str)
            and isinstance(one.get("attempt_id"), str)]


def at_delivery(cluster: str, message: Any) -> Swaps | None:
    """The claims of a run message's attempts, to be made with its delivery's record, or
    None (not a run message, not readable here, no live child): the child claims then."""
    try:
        if (message.headers or {}).get("task") != RUN_TASK or message.content_type != "application/json":
            return None
        child = _child()
        if child is None:
            return None
        body = json.loads(message.body)
        mine = members(body[1])
        if not mine or len(mine) > SLOT_ATTEMPTS:
            return None
        digests = [fence.digest(m) for m in mine]
    except Exception:  # anything unexpected: the child claims, as it always could
        log.debug("run message not claimed at delivery", exc_info=True)
        return None

    attempts = [m["attempt_id"] for m in mine]
    ticket = next(_TICKETS)
    message.headers[HEADER] = {"token": _TOKEN, "attempts": attempts, "ticket": ticket}
    message._decoded_cache = body  # read once: Celery would parse it again

    def then(before: list[bytes | None]) -> None:
        post(ticket, [fence.verdict(b, d) for b, d in zip(before, digests, strict=True)])

    return Swaps(keys=[fence.key(cluster, a) for a in attempts],
                 expected=[fence.issued(d) for d in digests], new=[fence.started_by(child)] * len(mine),
                 ttl=fence.TTL, then=then)


def post(ticket: int, verdicts: list[fence.Verdict]) -> None:
    """In the main process: a ticket's verdicts, for the child. The slot's ticket is cleared
    first and written last, so a child that reads its ticket before and after the verdicts
    never takes verdicts written for another."""
    _SLOT[0:8] = struct.pack("Q", 0)
    _SLOT[8:12] = struct.pack("I", len(verdicts))
    _SLOT[16:16 + len(verdicts)] = bytes(CODES.index(v) for v in verdicts)
    _SLOT[0:8] = struct.pack("Q", ticket)


def _posted(ticket: int, count: int) -> list[fence.Verdict] | None:
    """The ticket's verdicts, once posted whole (read between two readings of the ticket)."""
    if struct.unpack("Q", _SLOT[0:8])[0] != ticket:
        return None
    n = struct.unpack("I", _SLOT[8:12])[0]
    codes = _SLOT[16:16 + n]
    if struct.unpack("Q", _SLOT[0:8])[0] != ticket or n != count or any(c >= len(CODES) for c in codes):
        return None
    return [CODES[c] for c in codes]


def _await(ticket: int, count: int) -> list[fence.Verdict] | None:
    deadline = time.monotonic() + WAIT
    pause = 0.00005
    while (verdicts := _posted(ticket, count)) is None:
        if time.monotonic() > deadline:
            log.warning("no verdicts came for claim ticket %d: the child claims for itself", ticket)
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.001)
    return verdicts


def given(claimed: Any, mine: list[dict[str, Any]]) -> list[fence.Verdict] | None:
    """In the child: the verdicts its main process found for these attempts, waited for
    under the message's ticket, or None when it made none, the ticket did not come from it,
    or they did not come in WAIT: the child claims for itself then."""
    if not (isinstance(claimed, dict) and secrets.compare_digest(str(claimed.get("token")), _TOKEN)):
        return None
    if claimed.get("attempts") != [m["attempt_id"] for m in mine]:
        return None
    ticket = claimed.get("ticket")
    return _await(ticket, len(mine)) if isinstance(ticket, int) and ticket > 0 else None
