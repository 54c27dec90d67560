"""Garbage-collector settings for a process that holds the scheduler's state.

A leader keeps every live task in memory: at a million tasks that is several million
long-lived objects (records, attempts, events), all freed by reference counting, none in
reference cycles. CPython's default collector (a young-generation pass every 700
allocations, a full pass whenever the old generation grew by a quarter) walks that heap
again and again for nothing: in the scale simulator it took nearly half of the core's CPU.
Fewer, larger collections keep the safety net for cycles (library objects, exceptions)
at a small fraction of the cost; state loaded at takeover is frozen, so full passes skip
it altogether.
"""

from __future__ import annotations

import gc

# Young-generation pass every 50,000 net allocations (was 700), a middle pass every 20 of
# those, an old-generation pass every 100 middle ones (and still only once the old
# generation grew by a quarter).
THRESHOLDS = (50_000, 20, 100)


def tune() -> tuple[int, ...]:
    """Set the collector for a large heap of acyclic records; returns the settings before."""
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    return before


def settle() -> None:
    """After loading state: move everything alive now out of the collector's sight (no
    scan: a takeover must not wait for a pass over a million records)."""
    gc.freeze()
