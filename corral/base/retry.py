"""The retry policy (M1), with its defaults spelled once for the client, pipelines, ingress,
the scheduler core and the simulator.

A task gets `1 + local` tries on a GPU; it then moves to another host, never to a GPU it
failed on, up to `hosts` placements in all; then it is FAILED with its whole attempt
history. The leader alone decides: a local retry is a new attempt it sends to the same GPU,
`backoff` seconds after the failure, doubled for each further local retry (at most
`MAX_BACKOFF`). A device fault is never retried on the same GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_LOCAL = 100
MAX_HOSTS = 100
MAX_BACKOFF = 30.0  # seconds: the longest a local retry waits
FIELDS = ("local", "hosts", "backoff")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    local: int = 2
    hosts: int = 3
    backoff: float = 0.0

    def delay(self, local_try: int) -> float:
        """Seconds before the `local_try`-th local retry (1 for the first) may start."""
        if self.backoff <= 0 or local_try < 1:
            return 0.0
        return min(MAX_BACKOFF, self.backoff * 2.0 ** min(local_try - 1, 32))

    def to_dict(self) -> dict[str, Any]:
        return {"local": self.local, "hosts": self.hosts, "backoff": self.backoff}

    @classmethod
    def parse(cls, raw: Any) -> RetryPolicy:
        """A policy from its JSON form, missing fields taking the defaults; a readable
        `ValueError` for anything else (unknown field, not a whole number, out of bounds)."""
        if raw is None:
            return DEFAULT
        if isinstance(raw, RetryPolicy):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"'retry' must be an object like {DEFAULT.to_dict()}, got {_short(raw)}")
        unknown = [k for k in raw if k not in FIELDS]
        if unknown:
            raise ValueError(f"'retry' has unknown field {_short(unknown[0])}; known: {', '.join(FIELDS)}")
        values: dict[str, Any] = {}
        for key, most in (("local", MAX_LOCAL), ("hosts", MAX_HOSTS)):
            if key in raw:
                value = raw[key]
                if type(value) is not int or not 0 <= value <= most:
                    raise ValueError(f"'retry.{key}' must be a whole number from 0 to {most}, "
                                     f"got {_short(value)}")
                values[key] = value
        if "backoff" in raw:
            value = raw["backoff"]
            if (type(value) not in (int, float) or not math.isfinite(value)
                    or not 0 <= value <= MAX_BACKOFF):
                raise ValueError(f"'retry.backoff' must be seconds from 0 to {MAX_BACKOFF:g}, "
                                 f"got {_short(value)}")
            values["backoff"] = float(value)
        return cls(**values) if values else DEFAULT


DEFAULT = RetryPolicy()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
