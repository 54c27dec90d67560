"""Human-readable views for the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_status(st: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]leader[/]: {st['leader']['id'] or '(none elected)'}")
    sched = Table("scheduler", "role", "address", title="schedulers")
    for s in st["schedulers"]:
        sched.add_row(s["id"], s["role"], s["address"])
    console.print(sched)
    gpus = Table("node", "gpu", "model", "state", "session", "outstanding", "failures", title="GPUs")
    for n in st["nodes"]:
        for g in n["gpus"]:
            gpus.add_row(n["name"], str(g["index"]), g.get("model") or "", g["state"],
                         g.get("session") or "-", str(g.get("outstanding", 0)),
                         str(g.get("consecutive_failures", 0)))
    console.print(gpus)
    sessions = Table("session", "fixed", "ratio", "allocated", "pending", "running", title="sessions")
    for s in st["sessions"]:
        sessions.add_row(s["name"], str(s["fixed_workers"]), str(s["share_ratio"]),
                         str(s["allocated"]), str(s["pending"]), str(s["running"]))
    console.print(sessions)
    console.print("tasks: " + ", ".join(f"{k} {v}" for k, v in st["tasks"].items()))
