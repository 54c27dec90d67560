"""Group commit: how long the shell may hold the next tick, so that one etcd transaction
carries the events of several. Every tick that writes costs a transaction (the leader's
gRPC call, etcd's raft entry and fsync, one watch response to every watcher) whatever it
holds; a busy leader with a few GPUs ticks once per finished message, and on two shared
cores those per-transaction costs were half of what corral spent per short task beyond
raw Celery.

Holding is safe only while it leaves no GPU without work: a tick is due at once while a
GPU with nothing in flight has work waiting for it (a lone task, a GPU that just ran
dry), while anything urgent, constrained or gang-shaped waits, or a task whose upstream
ended, and when there is no backlog. Otherwise every busy GPU still has a message to
run, and the refill of the slot that just freed may wait for up to
`CORRAL_COMMIT_LINGER` (8 ms), and never more than `SHARE` of the time a GPU has
recently taken per message, so that the refill still lands before the message in
flight ends.
"""

from __future__ import annotations

from corral.scheduler.core.state import GpuKey

SHARE = 0.6  # of a GPU's recent time per message, the most a refill is held
BACK_TO_BACK = 1.0  # seconds: a longer gap between two messages' ends on a GPU is idle time


class Pacing:
    def _init(self) -> None:
        self.cycle: float | None = None  # moving average: seconds between two messages' ends on a busy GPU
        self._ended: dict[GpuKey, float] = {}

    def _message_ended(self, key: GpuKey, now: float) -> None:
        """A GPU's message ended and another is in flight there: its time per message."""
        last, self._ended[key] = self._ended.get(key), now
        if last is None or not 0.0 <= now - last < BACK_TO_BACK or not self.busy.get(key):
            return
        gap = now - last
        self.cycle = gap if self.cycle is None else self.cycle + 0.1 * (gap - self.cycle)

    def hold(self) -> float:
        """Seconds the next tick may wait for more events; 0: tick now."""
        linger = self.policy.commit_linger
        if linger <= 0 or self.cycle is None:
            return 0.0
        if self.urgent or self.constraints or self._ended_upstream or any(self.gang_queue.values()):
            return 0.0
        backlog = False
        for session, queue in self.pending.items():
            if queue:
                if self.ready.idle.get(session):
                    return 0.0  # a GPU with nothing in flight has work waiting
                backlog = True
        return min(linger, SHARE * self.cycle) if backlog else 0.0
