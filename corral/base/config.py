"""Settings shared by every corral process, read from the environment (docs/contracts.md, Configuration).

This class is the one definition of every setting and its default: the environment
variable is `CORRAL_` and the field's name in capitals, the scheduler core's policy is
derived from it (`Policy.from_settings`), and the CLI's flags default to it. The CLI writes
flags back into a Settings object, so child processes inherit them through the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

PREFIX = "CORRAL_"


def env_name(field: str) -> str:
    """The environment variable of a setting: `CORRAL_` and its name in capitals."""
    return PREFIX + field.upper()


@dataclass(frozen=True)
class Settings:
    etcd: str = "127.0.0.1:2379"
    broker: str = "redis://127.0.0.1:6379/0"
    redis_master: str = "mymaster"  # the primary's name, for a sentinel:// broker URL
    cluster: str = "default"
    etcd_user: str = ""
    etcd_password: str = ""
    etcd_ca: str = ""
    etcd_cert: str = ""
    etcd_key: str = ""
    inline_limit: int = 256 * 1024
    args_in_etcd: int = 4096  # args larger than this (bytes of JSON) wait in Redis, not etcd
    node_ttl: float = 3.0
    leader_ttl: float = 2.0
    queue_depth: int = 2
    heartbeat: float = 2.0
    heartbeat_misses: int = 5
    node_stable: float = 10.0
    quarantine_after: int = 3
    idle_grace: float = 2.0
    task_retention: float = 86400.0  # finished tasks stay in the history store this long
    history: str = ""  # the history store: empty for Redis, else an SQLAlchemy URL
    dedup_window: float = 600.0  # finished ids the leader knows without asking the history store
    result_ttl: int = 7 * 24 * 3600
    worker_events: bool = False  # Celery task events, for Flower
    worker_log_level: str = "WARNING"  # GPU workers' Celery log level (INFO logs every task)
    batch_max: int = 32  # most tasks per GPU-queue message (M11); 1 turns batching off
    batch_seconds: float = 0.05  # work one batched message should carry
    batch_backlog_seconds: float = 0.25  # ... and at most, spread over a deep backlog
    commit_linger: float = 0.008  # the longest a busy leader holds a tick to commit more at once (0: off)
    etcd_history: float = 60.0  # seconds of etcd revision history the leader keeps
    checkpoint_every: float = 600.0  # the leader asks running tasks for a checkpoint (0: never)
    jobs: bool = False  # node agents run command jobs (corral.job): any program, for whoever can submit
    move_grace: float = 30.0  # a running attempt asked to move has this long to checkpoint and stop
    job_dir: str = ""  # where a node keeps its jobs' working and checkpoint directories (temp dir)
    job_log_bytes: int = 4 * 1024**2  # a job attempt's output kept in Redis (and per file on disk)
    job_checkpoint_bytes: int = 64 * 1024**2  # largest checkpoint directory a job may save
    max_live_tasks: int = 100_000  # unfinished tasks in etcd past which new work is refused
    etcd_quota: int = 2 * 1024**3  # etcd's space quota in bytes (--quota-backend-bytes)
    etcd_high_water: float = 0.5  # share of the quota past which new work is refused

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = env_name(f.name)
            if env.get(name, "") != "":
                values[f.name] = _coerce(f.type, env[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """Environment that makes a child process see these same settings."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[env_name(f.name)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    @property
    def etcd_endpoints(self) -> list[tuple[str, int]]:
        out = []
        for part in self.etcd.split(","):
            part = part.strip().removeprefix("http://").removeprefix("https://")
            if not part:
                continue
            host, _, port = part.rpartition(":")
            out.append((host or "127.0.0.1", int(port or 2379)))
        if not out:
            raise ValueError(f"CORRAL_ETCD names no endpoint: {self.etcd!r}")
        return out


def _coerce(kind: object, raw: str) -> object:
    kind = str(kind)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.strip().lower() not in ("0", "false", "no", "off", "")
    return raw
