"""Admission: backpressure before any store is full. New submissions are refused, each with
a REJECTED record that says why, while the unfinished tasks in etcd reach `max_live` or
etcd's database reaches its high-water mark; admitted work keeps flowing, and submissions
are taken again once the backlog has drained below nine tenths of the mark."""

from __future__ import annotations

import logging
from typing import Any

from corral.scheduler.records import PENDING, QUEUED, RUNNING

log = logging.getLogger("corral.scheduler")

REOPEN = 0.9  # the share of a mark below which a closed door opens again


class Admission:
    def _init(self) -> None:
        self.admitting = True
        self.refusal: str | None = None  # why new work is refused, while it is
        self.etcd_bytes = 0  # etcd's database size, as the shell last read it

    def storage(self, etcd_bytes: int) -> None:
        """The shell's reading of etcd's database size."""
        self.etcd_bytes = etcd_bytes
        self._admit()

    def _live(self) -> int:
        counts = self.counts
        return counts[PENDING] + counts[QUEUED] + counts[RUNNING]

    def _admit(self) -> bool:
        """Whether a new submission may come in now (and the door's state, updated)."""
        live, stored = self._live(), self.etcd_bytes
        most, high = self.policy.max_live, self.policy.etcd_high_water
        if self.admitting:
            if live < most and stored < high:
                return True
            self.admitting = False
            self.refusal = (f"the cluster holds {live} unfinished tasks (the mark is {most}, "
                            "CORRAL_MAX_LIVE_TASKS)" if live >= most else
                            f"etcd's database is {stored} bytes (the mark is {high}: "
                            "CORRAL_ETCD_HIGH_WATER of CORRAL_ETCD_QUOTA)")
            log.warning("refusing new work: %s", self.refusal)
            return False
        if live < most * REOPEN and stored < high * REOPEN:
            self.admitting, self.refusal = True, None
            log.warning("taking new work again: %d unfinished tasks, etcd %d bytes", live, stored)
            return True
        return False

    def admission(self) -> dict[str, Any]:
        return {"open": self.admitting, "reason": self.refusal, "live": self._live(),
                "max_live": self.policy.max_live, "etcd_bytes": self.etcd_bytes,
                "etcd_high_water": self.policy.etcd_high_water}
