"""Keeping etcd's file small: compaction of its revision history, and defragmentation when
the file nears the admission mark. The leader's job, as it is the Kubernetes API server's.

etcd keeps every revision of every key until the history is compacted, and the leader
writes each task record several times (submitted, dispatched, its outcome, its removal to
the history store) and the cluster summary twice a second. Left alone, that history fills
etcd's quota and etcd then refuses every write ("mvcc: database space exceeded"), which
stops the cluster. So the leader notes the current revision every few seconds and compacts
up to the newest one it noted `CORRAL_ETCD_HISTORY` seconds (60) earlier: watchers keep
that much history (a follower's mirror or a client's wait that falls further behind reads
again). Once etcd's file passes half the admission mark, it keeps only `PRESSED_KEEP`
seconds: at full speed a minute of history is tens of megabytes.

Compaction frees pages inside etcd's file for reuse but never shrinks it, and etcd reports
only the file's size, which admission compares with its mark; a burst could so close the
door for good. So when the file reaches `DEFRAG_AT` of the mark, the leader defragments
each member in turn (`etcdctl defrag`), at most once every `DEFRAG_EVERY` seconds. A
defragmentation blocks that member's reads and writes while it copies the live data, a
few milliseconds per megabyte; members are done one at a time so that a cluster of three
keeps a quorum. Below the mark, defragmentation is left to operators (docs/operations.md).
"""

from __future__ import annotations

from collections import deque

EVERY = 1.0  # at most this many seconds between marks (and compactions)
PRESSED_KEEP = 2.0  # seconds of history kept while etcd's file is past half the mark
DEFRAG_AT = 0.8  # share of the admission mark at which the leader defragments
DEFRAG_EVERY = 60.0  # seconds between two defragmentations at least


class Revisions:
    """Revisions noted over time; which one is now old enough to compact up to."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self.marks: deque[tuple[float, int]] = deque()
        self.compacted = 0  # the newest revision returned: compacted up to, or asked to be

    def mark(self, now: float, revision: int, pressed: bool = False) -> int | None:
        """Note the current revision; return the newest noted one older than the window
        (`keep`, or `PRESSED_KEEP` when pressed), if any and newer than the last returned
        (an idle cluster writes nothing: etcd refuses a compaction it has done already)."""
        self.marks.append((now, revision))
        keep = min(self.keep, PRESSED_KEEP) if pressed else self.keep
        target = None
        while self.marks and self.marks[0][0] <= now - keep:
            target = self.marks.popleft()[1]
        if target is None or target <= self.compacted:
            return None
        self.compacted = target
        return target


def pressed(db_bytes: int, high_water: int) -> bool:
    """Whether etcd's file is past half the admission mark: keep less history."""
    return db_bytes >= high_water / 2


def defrag_due(db_bytes: int, high_water: int, now: float, last: float | None) -> bool:
    """Whether the leader should defragment now: the file is near the mark, and the last
    defragmentation is not recent (its file may hold live data only)."""
    return db_bytes >= high_water * DEFRAG_AT and (last is None or now - last >= DEFRAG_EVERY)
