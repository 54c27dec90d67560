"""Node health as a pure policy over lease events and operator commands.

A node whose lease expires is LOST. When it registers again it is REJOINING and gets no
work until it has stayed registered for the stabilization window. A node lost K times
within a window (3 in 10 minutes by default) is QUARANTINED until an operator undrains it.
DRAINED takes no new work; running attempts finish.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

UP, LOST, REJOINING, QUARANTINED, DRAINED = "up", "lost", "rejoining", "quarantined", "drained"


@dataclass(frozen=True)
class NodePolicy:
    stable_after: float = 10.0
    max_losses: int = 3
    loss_window: float = 600.0


@dataclass(frozen=True)
class NodeHealth:
    state: str = UP
    since: float = 0.0
    losses: tuple[float, ...] = ()
    registered: bool = True
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.state == UP and self.registered

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state, "since": self.since, "losses": list(self.losses),
                "registered": self.registered, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> NodeHealth:
        return cls(str(data.get("state", UP)), float(data.get("since", 0.0)),  # type: ignore[arg-type]
                   tuple(float(x) for x in data.get("losses", [])),  # type: ignore[union-attr]
                   bool(data.get("registered", True)), str(data.get("reason", "")))


def on_lost(h: NodeHealth, now: float, p: NodePolicy) -> NodeHealth:
    losses = tuple(t for t in (*h.losses, now) if now - t <= p.loss_window)
    if h.state in (QUARANTINED, DRAINED):
        return replace(h, losses=losses, registered=False)
    if len(losses) >= p.max_losses:
        return NodeHealth(QUARANTINED, now, losses, False,
                          f"lost {len(losses)} times within {p.loss_window:.0f} s (flapping)")
    return NodeHealth(LOST, now, losses, False, "lease expired")


def on_registered(h: NodeHealth, now: float, first_time: bool) -> NodeHealth:
    if first_time:
        return NodeHealth(UP, now, (), True, "")
    if h.state in (LOST, REJOINING):
        return NodeHealth(REJOINING, now, h.losses, True, "registered again; stabilizing")
    return replace(h, registered=True)


def on_tick(h: NodeHealth, now: float, p: NodePolicy) -> NodeHealth:
    if h.state == REJOINING and h.registered and now - h.since >= p.stable_after:
        return replace(h, state=UP, since=now, reason=f"stable for {p.stable_after:.0f} s")
    return h


def drain(h: NodeHealth, now: float) -> NodeHealth:
    return replace(h, state=DRAINED, since=now, reason="drained by operator")


def undrain(h: NodeHealth, now: float) -> NodeHealth:
    """Operator re-admission: clears a drain or a flapping quarantine and the loss history."""
    state = UP if h.registered else LOST
    return NodeHealth(state, now, (), h.registered, "undrained by operator")
