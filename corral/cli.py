"""The `corral` command line (docs/contracts.md, CLI). Every setting is a flag and an env variable."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer

from corral import cli_errors, cli_jobs
from corral.base.config import Settings
from corral.cli_common import BrokerOpt, ClusterOpt, EtcdOpt
from corral.cli_common import client_for as _client
from corral.cli_common import settings_for as _settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="corral: a high-availability scheduler for AI work on GPU clusters.")
session_app = typer.Typer(no_args_is_help=True, help="Open, close and list sessions.")
app.add_typer(session_app, name="session")

StateOpt = typer.Option(Path(".corral"), "--state-dir", help="where the local cluster keeps its state")


def _logging(role: str) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
    )


_fail = cli_errors.say


@app.command()
def up(
    nodes: int = typer.Option(1, "--nodes", min=0),
    gpus: int | None = typer.Option(None, "--gpus", min=0,
                                    help="simulated GPUs per node (default: NVML, else 4)"),
    schedulers: int = typer.Option(3, "--schedulers", min=1),
    faulty_gpus: str = typer.Option("", "--faulty-gpus", help="NODE:INDEX,... that fail every task"),
    state_dir: Path = StateOpt,
    detach: bool = typer.Option(False, "--detach", help="return once the cluster is ready"),
    cluster: str = typer.Option("local", "--cluster", envvar="CORRAL_CLUSTER"),
    flower: bool = typer.Option(True, "--flower/--no-flower"),
    redis_ha: bool = typer.Option(False, "--redis-ha",
                                  help="a Redis primary, a replica and three sentinels (failover)"),
) -> None:
    """Start a whole local cluster: etcd, Redis, schedulers, node agents, Flower."""
    from corral.local import ClusterError, LocalCluster
    from corral.workers.gpus import nvml

    faulty = [f.strip() for f in faulty_gpus.split(",") if f.strip()]
    for f in faulty:
        if ":" not in f:
            _fail(f"--faulty-gpus takes NODE:INDEX, got {f!r}")
    if gpus is None and not nvml():
        gpus = 4
    lc = LocalCluster(state_dir, nodes=nodes, gpus=gpus, schedulers=schedulers, faulty=faulty,
                      flower=flower, settings=Settings.from_env(cluster=cluster), redis_ha=redis_ha)
    try:
        lc.start()
    except ClusterError as exc:
        _fail(str(exc))
    info = lc.info
    typer.echo(f"corral cluster up, every GPU worker consuming: etcd {info['etcd']}, "
               f"broker {info['broker']}, flower {info.get('flower', '-')} "
               f"(user {info.get('flower_user', '-')})")
    typer.echo(f"state in {lc.dir}/cluster.json; use these settings:")
    shown = {"CORRAL_ETCD", "CORRAL_BROKER", "CORRAL_CLUSTER"}
    if redis_ha:
        shown.add("CORRAL_REDIS_MASTER")
    for k, v in lc.settings.to_env().items():
        if k in shown:
            typer.echo(f"  export {k}='{v}'")
    if detach:
        return
    typer.echo("Ctrl-C stops the cluster.")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    lc.stop()


@app.command()
def down(state_dir: Path = StateOpt) -> None:
    """Stop the local cluster started from STATE_DIR; no process is left behind."""
    from corral.local import ClusterError, LocalCluster

    try:
        LocalCluster.load(state_dir).stop()
    except ClusterError as exc:
        _fail(str(exc))
    typer.echo("corral cluster stopped")


@app.command()
def scheduler(
    id: str = typer.Option("", "--id", help="replica id (default: host-pid)"),
    http_port: int = typer.Option(0, "--http-port",
                                  help="read-only HTTP: status page, /metrics, /healthz (0: any free)"),
    http_host: str = typer.Option("127.0.0.1", "--http-host",
                                  help="address to serve HTTP on (0.0.0.0: every interface)"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Run one scheduler replica (leader-elected)."""
    import os
    import socket

    from corral.scheduler.service import Scheduler

    sid = id or f"{socket.gethostname()}-{os.getpid()}"
    _logging(sid)
    svc = Scheduler(_settings(etcd, broker, cluster), sid, http_port, http_host)
    signal.signal(signal.SIGTERM, lambda *_: svc.stop())
    signal.signal(signal.SIGINT, lambda *_: svc.stop())
    svc.serve()


node_app = typer.Typer(help="Run the node agent, or drain and undrain a node.")
app.add_typer(node_app, name="node")
gpu_app = typer.Typer(no_args_is_help=True, help="Quarantine or release one GPU.")
app.add_typer(gpu_app, name="gpu")


@node_app.callback(invoke_without_command=True)
def node(
    ctx: typer.Context,
    name: str = typer.Option("", "--name", help="node name (default: hostname)"),
    fake_gpus: int | None = typer.Option(None, "--fake-gpus", min=0,
                                         help="simulate N GPUs instead of NVML discovery"),
    faulty_gpus: str = typer.Option("", "--faulty-gpus", help="simulated GPU indexes I,J that fail"),
    fault_file: Path | None = typer.Option(None, "--fault-file",
                                           help="JSON {index: reason}: simulated NVML health signals"),
    log_dir: Path = typer.Option(Path("logs"), "--log-dir"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=0,
                                            help="serve Prometheus /metrics here (0: any free port)"),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="address for /metrics"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Run the node agent: register GPUs and keep one Celery worker per GPU."""
    if ctx.invoked_subcommand is not None:
        return
    import socket

    from corral.workers.agent import Agent
    from corral.workers.gpus import discover

    name = name or socket.gethostname()
    _logging(name)
    try:
        faulty = {int(i) for i in faulty_gpus.split(",") if i.strip()}
    except ValueError:
        _fail(f"--faulty-gpus takes GPU indexes like 0,2; got {faulty_gpus!r}")
    Agent(_settings(etcd, broker, cluster), name, discover(fake_gpus, faulty), log_dir,
          fault_file, metrics_port, metrics_host).serve()


def _admin(action: str, node_name: str, gpu: int | None, etcd: str | None, broker: str | None,
           cluster: str | None, **extra: Any) -> None:
    result = _client(etcd, broker, cluster).admin(action, node_name, gpu, **extra)
    if result is None:
        _fail(f"{action} {node_name}{'' if gpu is None else f':{gpu}'} was not applied within 10 s "
              "(is a leader running? see `corral status`)")
    typer.echo(json.dumps(result))


def _gpu_target(target: str) -> tuple[str, int]:
    node_name, _, index = target.rpartition(":")
    if not node_name or not index.isdigit():
        _fail(f"expected NODE:INDEX, got {target!r}")
    return node_name, int(index)


@gpu_app.command("quarantine")
def gpu_quarantine(
    target: str,
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Take NODE:INDEX out of service now; its attempts move elsewhere."""
    _admin("gpu.quarantine", *_gpu_target(target), etcd, broker, cluster)


@gpu_app.command("release")
def gpu_release(
    target: str,
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Return a quarantined NODE:INDEX to service."""
    _admin("gpu.release", *_gpu_target(target), etcd, broker, cluster)


@node_app.command("drain")
def node_drain(
    name: str,
    finish: bool = typer.Option(False, "--finish", help="let running work finish there instead of moving it"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """No new work on NAME; queued work moves; running work checkpoints and moves within
    CORRAL_MOVE_GRACE seconds (with --finish: it finishes there)."""
    _admin("node.drain", name, None, etcd, broker, cluster, move=not finish)


@node_app.command("undrain")
def node_undrain(
    name: str,
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Return NAME to service (also ends a flapping quarantine)."""
    _admin("node.undrain", name, None, etcd, broker, cluster)


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Show leader, schedulers, nodes and GPUs, sessions and task counts."""
    client = _client(etcd, broker, cluster)
    st = client.status()
    if as_json:
        typer.echo(json.dumps(st, indent=2))
        return
    from corral.display import print_status

    print_status(st)


@app.command()
def submit(
    algorithm: str,
    args: str = typer.Option("null", "--args", help="JSON arguments"),
    session: str = typer.Option("default", "--session"),
    task_id: str | None = typer.Option(None, "--task-id", help="idempotency key"),
    wait: bool = typer.Option(False, "--wait"),
    timeout: float = typer.Option(600.0, "--timeout"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Submit one task; with --wait, print its result."""
    try:
        parsed = json.loads(args)
    except ValueError as exc:
        _fail(f"--args is not JSON: {exc}")
    client = _client(etcd, broker, cluster)
    handle = client.submit(algorithm, parsed, session=session, task_id=task_id)
    if not wait:
        typer.echo(handle.id)
        return
    from corral.client import TaskFailed

    try:
        typer.echo(json.dumps(handle.result(timeout=timeout)))
    except TaskFailed as exc:
        _fail(str(exc))


@session_app.command("open")
def session_open(
    name: str,
    fixed_workers: int = typer.Option(0, "--fixed-workers", min=0),
    share_ratio: float = typer.Option(1.0, "--share-ratio", min=0.001),
    max_workers: int | None = typer.Option(None, "--max-workers"),
    priority: int = typer.Option(0, "--priority"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Open (or update) a session."""
    _client(etcd, broker, cluster).open_session(name, fixed_workers, share_ratio, max_workers,
                                                priority)
    typer.echo(f"session {name} open requested")


@session_app.command("close")
def session_close(
    name: str,
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Close a session."""
    _client(etcd, broker, cluster).close_session(name, force=True)
    typer.echo(f"session {name} close requested")


@session_app.command("list")
def session_list(
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """List sessions with their shares and load."""
    typer.echo(json.dumps(_client(etcd, broker, cluster).status()["sessions"], indent=2))


pipeline_app = typer.Typer(no_args_is_help=True, help="Check and run pipeline files (M9).")
app.add_typer(pipeline_app, name="pipeline")


def _pipeline(file: Path) -> Any:
    from corral.pipelines.spec import SpecError, load

    try:
        return load(file)
    except SpecError as exc:
        _fail(str(exc))


@pipeline_app.command("check")
def pipeline_check(file: Path) -> None:
    """Validate a pipeline file and print its stages in the order they run."""
    from corral.pipelines.spec import order

    spec = _pipeline(file)
    typer.echo(f"pipeline {spec.name}: {spec.source.kind} source {spec.source.path}")
    for stage in order(spec.stages):
        after = f" after {', '.join(stage.after)}" if stage.after else ""
        typer.echo(f"  {stage.name}: {stage.algorithm}{after}")
    typer.echo(f"  sink: {spec.sink.kind} {spec.sink.table} from {', '.join(spec.sink_stages())}")


@pipeline_app.command("run")
def pipeline_run(
    file: Path,
    wait: bool = typer.Option(False, "--wait", help="wait for every item's rows and report"),
    run_id: str | None = typer.Option(None, "--run-id", help="resume this run (submits what is missing)"),
    spool: Path | None = typer.Option(None, "--spool", help="where a stream's segments are written "
                                      "(shared storage when workers are on other hosts)"),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds to wait at most"),
    as_json: bool = typer.Option(False, "--json", help="end with one JSON line of the report"),
    etcd: str | None = EtcdOpt, broker: str | None = BrokerOpt, cluster: str | None = ClusterOpt,
) -> None:
    """Submit a pipeline: one task per stage per item of its source, and a sink per item."""
    import time

    from corral import pipeline_run as runner
    from corral.display import progress_bar
    from corral.pipelines.spec import SpecError

    spec = _pipeline(file)
    client = _client(etcd, broker, cluster)
    started = time.time()
    run_id = run_id or runner.new_run_id(spec)
    with progress_bar(transient=as_json) as bar:
        reading = bar.add_task(f"{run_id}: items submitted", total=None)
        try:
            report = runner.submit(client, spec, run_id, spool,
                                   on_item=lambda n: bar.update(reading, completed=n))
        except SpecError as exc:
            _fail(str(exc))
        bar.update(reading, total=report.items, completed=report.items)
        if wait:
            written = bar.add_task("items written", total=report.items)
            try:
                runner.finish(client, report, started, timeout,
                              progress=lambda n: bar.update(written, completed=n))
            except TimeoutError as exc:
                _fail(f"{exc}; resume with --run-id {run_id}")
    if not wait:
        typer.echo(f"run {run_id}: {report.items} items, {report.tasks} tasks submitted")
        return
    unit = "lines" if spec.source.kind == "text" else "frames"
    typer.echo(f"run {run_id}: {report.succeeded}/{report.items} items written, {report.rows} rows, "
               f"{report.frames} {unit} in {report.seconds:.1f} s ({report.fps:.1f} per second)")
    for index, why in sorted(report.failed.items())[:20]:
        typer.echo(f"  item {index}: {why}", err=True)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    if report.failed:
        raise typer.Exit(1)


@app.command()
def simulate(
    nodes: int = typer.Option(100, "--nodes", min=1),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", min=1),
    sessions: int = typer.Option(20, "--sessions", min=1),
    tasks: int = typer.Option(100_000, "--tasks", min=1),
    faults: float = typer.Option(0.0, "--faults", min=0.0, max=0.5,
                                 help="share of attempts failing, of GPUs faulty, of nodes lost"),
    seed: int = typer.Option(1, "--seed"),
    task_seconds: float = typer.Option(1.0, "--task-seconds", min=0.01),
    arrival: float = typer.Option(30.0, "--arrival", min=0.0,
                                  help="seconds over which the tasks arrive (uniformly)"),
    as_json: bool = typer.Option(False, "--json", help="end with one JSON line of the figures"),
) -> None:
    """Run the real scheduler core against a simulated cluster on a simulated clock (no I/O)."""
    from corral.display import print_simulation
    from corral.scheduler.simulate import SimConfig
    from corral.scheduler.simulate import simulate as run

    logging.disable(logging.WARNING)  # the core's per-GPU warnings would flood the terminal
    figures = run(SimConfig(nodes=nodes, gpus_per_node=gpus_per_node, sessions=sessions, tasks=tasks,
                            faults=faults, seed=seed, task_seconds=task_seconds,
                            arrival_seconds=arrival))
    print_simulation(figures)
    if as_json:
        typer.echo(json.dumps(figures))
    if not figures["invariants_hold"]:
        raise typer.Exit(1)


@app.command()
def demo(
    tasks: int = typer.Option(200, "--tasks", min=1),
    gpus: int = typer.Option(4, "--gpus", min=1),
    state_dir: Path = typer.Option(Path(".corral-demo"), "--state-dir"),
) -> None:
    """Start a local cluster, run TASKS corral.echo tasks through a session, print a summary."""
    from corral.demo import run_demo

    raise typer.Exit(run_demo(tasks=tasks, gpus=gpus, state_dir=state_dir))


cli_jobs.register(app)


def main() -> None:
    cli_errors.run(app)


if __name__ == "__main__":
    main()
