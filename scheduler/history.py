"""Compacting etcd's revision history: the leader's job, as it is the Kubernetes API server's.

etcd keeps every revision of every key until the history is compacted, and the leader
rewrites each task record several times (submitted, dispatched, its outcome) and the
cluster summary twice a second. Left alone, that history fills etcd's quota (2 GiB by
default) within hours at a few hundred tasks a second, and etcd then refuses every write
("mvcc: database space exceeded"), which stops the cluster. So the leader notes the
current revision every minute and compacts up to the one it noted `CORRAL_ETCD_HISTORY`
seconds (5 minutes) earlier: watchers keep that much history (a follower's mirror that
falls further behind takes a new snapshot). Compaction frees space inside etcd's file
for reuse; shrinking the file itself is `etcdctl defrag`, an operator's choice.
"""

from __future__ import annotations

from collections import deque

EVERY = 60.0  # seconds between marks (and compactions)


class History:
    """Revisions noted over time; which one is now old enough to compact up to."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self.marks: deque[tuple[float, int]] = deque()

    def mark(self, now: float, revision: int) -> int | None:
        """Note the current revision; return the newest noted one older than `keep`, if any."""
        self.marks.append((now, revision))
        target = None
        while self.marks and self.marks[0][0] <= now - self.keep:
            target = self.marks.popleft()[1]
        return target
