"""corral: a high-availability scheduler for AI work on GPU clusters.

    import corral
    client = corral.connect()
    with client.session("video", fixed_workers=2, share_ratio=3.0) as s:
        h = s.submit("corral.echo", {"x": 1}, retry=corral.Retry(local=2, hosts=2))
        h.result(timeout=30)
"""

from corral.client import Client, Handle, Retry, Session, TaskFailed, connect

__all__ = ["Client", "Handle", "Retry", "Session", "TaskFailed", "connect"]
__version__ = "0.1.0"
