"""Human-readable views for the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress_bar(console: Console | None = None, transient: bool = False) -> Progress:
    """The bar every long wait shows: description, bar, done/total, time elapsed."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=transient)


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


def print_simulation(f: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table("figure", "value", title=f"simulated: {f['nodes']} nodes, {f['gpus']} GPUs, "
                  f"{f['sessions']} sessions, {f['tasks']} tasks, faults {f['faults']}")
    rows = [
        ("routing decisions", f"{f['routing_decisions']:,}"),
        ("decisions per second of core CPU", f"{f['decisions_per_second']:,.0f}"),
        ("  of routing CPU alone", f"{f['routing_decisions_per_second']:,.0f}"),
        ("allocator runs", f"{f['allocator_runs']:,}"),
        ("allocator p50 / p99", f"{f['allocator_p50_ms']:.1f} ms / {f['allocator_p99_ms']:.1f} ms"),
        ("etcd writes per simulated second", f"{f['etcd_writes_per_second']:,.0f} "
         f"(in {f['etcd_transactions_per_second']:.0f} transactions)"),
        ("simulated / wall time", f"{f['simulated_seconds']:.0f} s / {f['wall_seconds']:.0f} s"),
        ("outcomes", ", ".join(f"{k} {v:,}" for k, v in f["outcomes"].items())),
        ("GPUs quarantined, nodes lost", f"{f['gpus_quarantined']}, {f['nodes_lost']}"),
        ("invariants", "hold" if f["invariants_hold"] else "VIOLATED: " + "; ".join(f["violations"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
