"""Whether a process is still there, for the launcher and for attempt fences alike."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while `pid` runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
