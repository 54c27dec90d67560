"""`corral job ...`, `corral task ...` and `corral checkpoint`: command jobs, their output,
cancelling, moving and checkpointing tasks (docs/jobs.md). Registered on the main app by
`corral.cli`."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer

from corral import cli_errors
from corral.cli_common import BrokerOpt, ClusterOpt, EtcdOpt
from corral.cli_common import client_for as _client

job_app = typer.Typer(no_args_is_help=True, help="Run programs on GPUs: run, logs, cancel.")


def register(app: typer.Typer) -> None:
    app.add_typer(job_app, name="job")
    app.command(name="task", context_settings={"allow_interspersed_args": False})(task)
    app.command(name="checkpoint")(checkpoint)


@job_app.command("run", context_settings={"allow_interspersed_args": False})
def job_run(
    command: list[str] = typer.Argument(..., help="the program and its arguments, after --"),
    gpus: int = typer.Option(1, "--gpus", min=1, help="GPUs of one node, all reserved together"),
    session: str = typer.Option("default", "--session"),
    task_id: str | None = typer.Option(None, "--task-id", help="idempotency key"),
    local: int = typer.Option(1, "--retry-local", min=0, help="retries on the same GPUs"),
    hosts: int = typer.Option(2, "--retry-hosts", min=0, help="moves to another node after failures"),
    env: list[str] = typer.Option([], "--env", help="NAME=VALUE for the job (repeatable)"),
    cwd: str | None = typer.Option(None, "--cwd", help="working directory on the node"),
    checkpoint_exit: int = typer.Option(85, "--checkpoint-exit", help="exit code meaning: run me again"),
    follow: bool = typer.Option(False, "--follow", "-f", help="print its output until it ends"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Run COMMAND as a job; prints its id (with --follow, its output, and exits as it did)."""
    from corral.base.retry import RetryPolicy

    pairs = dict(e.split("=", 1) for e in env if "=" in e)
    if len(pairs) != len(env):
        cli_errors.say("--env takes NAME=VALUE")
    client = _client(etcd, broker, cluster)
    try:
        handle = client.job(command, gpus=gpus, env=pairs, cwd=cwd, session=session, task_id=task_id,
                            retry=RetryPolicy(local=local, hosts=hosts), checkpoint_exit=checkpoint_exit)
    except ValueError as exc:
        cli_errors.say(str(exc))
    if not follow:
        typer.echo(handle.id)
        return
    typer.echo(f"job {handle.id}", err=True)
    _print_logs(client, handle.id, follow=True)
    record = client.wait([handle])[handle.id]
    if record["state"] != "SUCCEEDED":
        cli_errors.say(f"job {handle.id} {record['state']}: {record.get('reason') or record.get('error')}")


@job_app.command("logs")
def job_logs(
    task_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the job ends"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Print a job's output, every attempt's, each under a header."""
    _print_logs(_client(etcd, broker, cluster), task_id, follow)


@job_app.command("cancel")
def job_cancel(
    task_id: str, wait: float = typer.Option(10.0, "--wait", help="seconds to wait for CANCELLED"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Cancel a job: its process group is killed; the record says CANCELLED."""
    _cancel(_client(etcd, broker, cluster), task_id, wait)


def task(
    words: list[str] = typer.Argument(..., metavar="[cancel|migrate] TASK_ID"),
    wait: float = typer.Option(10.0, "--wait", help="seconds to wait for a cancel or a move"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Print a task record (`corral task ID`); `corral task cancel ID` cancels it,
    `corral task migrate ID` moves it (it checkpoints, stops, runs on another node)."""
    client = _client(etcd, broker, cluster)
    if len(words) == 1:
        record = client.task(words[0])
        if record is None:
            cli_errors.say(f"no task {words[0]!r} (not submitted, not yet recorded, or compacted)")
        typer.echo(json.dumps(record, indent=2))
    elif len(words) == 2 and words[0] == "cancel":
        _cancel(client, words[1], wait)
    elif len(words) == 2 and words[0] == "migrate":
        _migrate(client, words[1], wait)
    else:
        cli_errors.say("usage: corral task ID | corral task cancel ID | corral task migrate ID")


def checkpoint(
    task_id: str,
    wait: float = typer.Option(0.0, "--wait", help="seconds to wait for the checkpoint to be recorded"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Ask a running task for a checkpoint now (M2); with --wait, print the one it saves."""
    client = _client(etcd, broker, cluster)
    record = client.task(task_id)
    if record is None:
        cli_errors.say(f"no task {task_id!r}")
    if record["state"] not in ("QUEUED", "RUNNING"):
        cli_errors.say(f"task {task_id} is {record['state']}: only a running task can save a checkpoint")
    before = record.get("checkpoint_ref")
    client.request_checkpoint(task_id)
    deadline = time.monotonic() + wait
    while wait and time.monotonic() < deadline:
        ref = (client.task(task_id) or {}).get("checkpoint_ref")
        if ref and ref != before:
            typer.echo(json.dumps({"checkpoint_ref": ref, "state": client.checkpoint(task_id)}))
            return
        time.sleep(0.2)
    if wait:
        cli_errors.say(f"no checkpoint recorded within {wait} s (is {record['algorithm']} checkpointable?)")
    typer.echo(f"checkpoint requested for {task_id}")


def _print_logs(client: Any, task_id: str, follow: bool) -> None:
    current = None
    try:
        for attempt_id, text in client.logs(task_id, follow=follow):
            if attempt_id != current:
                current = attempt_id
                typer.secho(f"==> attempt {attempt_id} <==", fg=typer.colors.CYAN, err=True)
            sys.stdout.write(text)
            sys.stdout.flush()
    except KeyError as exc:
        cli_errors.say(str(exc.args[0]))


def _live(client: Any, task_id: str) -> dict[str, Any]:
    record = client.task(task_id)
    if record is None:
        cli_errors.say(f"no task {task_id!r}")
    if record["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED"):
        cli_errors.say(f"task {task_id} already ended {record['state']}")
    return record


def _cancel(client: Any, task_id: str, wait: float) -> None:
    _live(client, task_id)
    client.cancel(task_id)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        record = client.task(task_id) or {}
        if record.get("state") == "CANCELLED":
            typer.echo(f"{task_id} CANCELLED")
            return
        if record.get("state") in ("SUCCEEDED", "FAILED"):
            cli_errors.say(f"task {task_id} ended {record['state']} before the cancel reached it")
        time.sleep(0.1)
    cli_errors.say(f"task {task_id} was not cancelled within {wait} s (is a scheduler running?)")


def _migrate(client: Any, task_id: str, wait: float) -> None:
    record = _live(client, task_id)
    if record["state"] != "RUNNING":
        cli_errors.say(f"task {task_id} is {record['state']}: only a running task moves")
    client.migrate(task_id)
    typer.echo(f"{task_id}: asked to checkpoint and move")
