"""corral: a high-availability scheduler for AI work on GPU clusters.

    import corral
    client = corral.connect()
    with client.session("video", fixed_workers=2, share_ratio=3.0) as s:
        h = s.submit("corral.echo", {"x": 1}, retry=corral.Retry(local=2, hosts=2))
        h.result(timeout=30)

The client is imported on first use, not with the package: the scheduler core, the GPU
workers and the node agent live under `corral.*` too and must not load the front door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.client import (
        Backpressure,
        Client,
        Handle,
        ResultLost,
        Retry,
        Session,
        SessionConflict,
        TaskFailed,
        connect,
    )

__all__ = ["Backpressure", "Client", "Handle", "ResultLost", "Retry", "Session", "SessionConflict",
           "TaskFailed", "connect"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from corral import client

        return getattr(client, name)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
