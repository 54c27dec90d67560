"""What the core counts for operators: events since this replica started leading, the
latencies a user feels, and the last notable events (the status page's "recent" list).
Plain counters and lists; the shell turns them into Prometheus metrics (`metrics.py`)."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

RECENT = 30  # notable events kept for the status page (they travel in the summary)

# A rejection's reason, as a metric label: the reason text itself is free-form.
_REJECTION_KINDS = (
    ("refused, submit again later", "backpressure"),
    ("unknown algorithm", "unknown_algorithm"),
    ("not registered", "unknown_algorithm"),
    ("too large", "too_large"),
    ("bytes", "too_large"),
    ("pickle", "not_json"),
    ("JSON", "not_json"),
    ("'after'", "bad_upstream"),
    ("Redis failed", "store_failed"),
)


def rejection_kind(reason: str) -> str:
    for needle, kind in _REJECTION_KINDS:
        if needle in reason:
            return kind
    return "invalid"


class Stats:
    def _init(self) -> None:
        self.stats: Counter[str] = Counter()  # event -> count (see metrics.py for the names)
        self.latencies: list[tuple[str, float]] = []  # ("route" | "start", seconds), drained by the shell
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def _note(self, at: float, kind: str, detail: str, **where: Any) -> None:
        """A notable event for the status page, and its count."""
        self.stats[kind] += 1
        self.recent.append({"time": at, "kind": kind, "detail": detail, **where})

    def take_stats(self) -> tuple[Counter[str], list[tuple[str, float]]]:
        """Counts and latencies since the last call (the shell adds them to its metrics)."""
        stats, latencies = self.stats, self.latencies
        self.stats, self.latencies = Counter(), []
        return stats, latencies
