"""Leader election on an etcd lease.

The leader key is created only if absent, under the candidate's lease; its
create_revision is the fencing token that every leader write compares against.
A leader whose lease refresh has not succeeded for a whole TTL considers itself
deposed *before* etcd can hand the key to another replica.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time

from etcd3.client import MultiEndpointEtcd3Client

from corral.base.keys import Keys

log = logging.getLogger("corral.election")

FOLLOWER_REFRESH = 0.5  # seconds between a follower's lease refreshes (the TTL is at least 2 s)


class Election:
    def __init__(
        self, client: MultiEndpointEtcd3Client, keys: Keys, candidate: str, ttl: float
    ) -> None:
        self.client = client
        self.keys = keys
        self.candidate = candidate
        self.ttl = max(2, math.ceil(ttl))
        self.lease = None
        self.token: int | None = None
        self._deadline = 0.0
        self._refreshed = 0.0
        # The election thread campaigns and refreshes while the loop may resign: without
        # this, a campaign woken by the resignation's own revoke could win with the lease
        # being revoked, or have its token cleared, and keep the key alive without leading.
        self._lock = threading.RLock()

    def campaign(self) -> int | None:
        """Try once to become leader; return the fencing token on success."""
        with self._lock:
            return self._campaign()

    def _campaign(self) -> int | None:
        if self.lease is None:
            asked = time.monotonic()
            self.lease = self.client.lease(self.ttl)
            self._deadline = asked + self.ttl - 0.5
        # A read first: a leader is there nearly always, and a transaction with a write in it
        # is a raft proposal (a disk sync on every member) even when its compare fails.
        _, meta = self.client.get(self.keys.leader)
        if meta is not None and meta.lease_id == self.lease.id and self.token is None:
            # The key is ours (a win whose token was lost): lead, rather than keep the
            # key alive under a lease nobody acts on.
            self.token = meta.create_revision
            log.info("%s holds the leader key under its own lease: leading with token %s",
                     self.candidate, self.token)
            return self.token
        if meta is not None:
            if time.monotonic() - self._refreshed >= FOLLOWER_REFRESH:
                self.keepalive()  # keep our lease warm so a win is immediately usable
            return None
        value = json.dumps({"id": self.candidate, "since": time.time()})
        tx = self.client.transactions
        ok, _ = self.client.transaction(
            compare=[tx.create(self.keys.leader) == 0],
            success=[tx.put(self.keys.leader, value, lease=self.lease)],
            failure=[],
        )
        if not ok:
            self.keepalive()  # keep our lease warm so a win is immediately usable
            return None
        _, meta = self.client.get(self.keys.leader)
        self.token = meta.create_revision if meta is not None else None
        log.info("%s became leader with token %s", self.candidate, self.token)
        return self.token

    def keepalive(self) -> bool:
        """Refresh the lease; False once it has expired or cannot be confirmed in time."""
        with self._lock:
            return self._keepalive()

    def _keepalive(self) -> bool:
        if self.lease is None:
            return False
        # The lease is counted from when the refresh was asked for, not from its answer: a
        # process stopped in between (SIGSTOP, a long pause) must not wake up believing
        # it holds a lease that expired while it slept.
        asked = time.monotonic()
        try:
            responses = list(self.client.refresh_lease(self.lease.id))
            alive = bool(responses) and responses[0].TTL > 0
        except Exception as exc:
            log.warning("lease refresh failed: %s", exc)
            alive = time.monotonic() < self._deadline
            return alive
        if alive:
            self._refreshed = asked
            self._deadline = asked + self.ttl - 0.5
        else:
            self.lease = None
        return alive

    def holds(self) -> bool:
        """Whether this replica may still act as leader right now (no I/O)."""
        return self.token is not None and time.monotonic() < self._deadline

    def still_leader(self) -> bool:
        with self._lock:
            if self.token is None or not self._keepalive():
                return False
            _, meta = self.client.get(self.keys.leader)
            return meta is not None and meta.create_revision == self.token

    def resign(self, token: int | None = None) -> None:
        """Give up the lease (the key goes with it). `token`: the term being ended; a term
        won since (the election thread campaigns while the loop still steps down from the
        last one) is left alone: revoking its lease would delete the new leader key."""
        with self._lock:
            if token is not None and self.token is not None and self.token != token:
                return
            self.token = None
            if self.lease is not None:
                try:
                    self.lease.revoke()
                except Exception:
                    log.debug("lease revoke failed", exc_info=True)
                self.lease = None
