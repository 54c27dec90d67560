"""A whole corral cluster on one machine: etcd, Redis, schedulers, node agents, Flower.

Used by `corral up`, `corral demo` and the integration tests, so that what the tests
exercise is exactly what an operator starts. Every process leads its own process
group; stopping the cluster signals each group, so nothing is left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral.base.config import Settings
from corral.base.etcd import connect, get_json, prefix_json
from corral.base.keys import Keys
from corral.base.process import alive, free_port, kill_group, stop_groups
from corral.netns import TestNet


class ClusterError(RuntimeError):
    """The local cluster could not be started or found."""


@dataclass
class Proc:
    role: str
    name: str
    pid: int
    log: str = ""
    args: list[str] = field(default_factory=list)


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ClusterError(f"{name} not found: install Debian's {package} (apt-get install {package})")
    return path


WARM_UP_SESSION = "corral-warm-up"


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` (any status: 401 is an answer)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


class LocalCluster:
    def __init__(
        self,
        state_dir: str | Path = ".corral",
        *,
        nodes: int = 1,
        gpus: int | None = 4,
        schedulers: int = 3,
        faulty: list[str] | None = None,
        etcd_members: int = 1,
        flower: bool = True,
        settings: Settings | None = None,
        redis_password: str | None = None,
        netns: bool = False,
        redis_ha: bool = False,
        jobs: bool = True,
    ) -> None:
        self.dir = Path(state_dir).resolve()
        self.n_nodes = nodes
        self.n_gpus = gpus
        self.n_schedulers = schedulers
        self.faulty = faulty or []
        self.etcd_members = etcd_members
        self.with_flower = flower
        self.base = (settings or Settings(cluster="local")).with_(jobs=jobs)  # a local cluster is yours
        if flower:
            self.base = self.base.with_(worker_events=True)
        self.redis_password = redis_password if redis_password is not None else secrets.token_hex(12)
        self.redis_ha = redis_ha  # a primary, a replica and three sentinels
        self.procs: list[Proc] = []
        self.info: dict[str, Any] = {}
        # With netns, each scheduler is its own network host and partitions are real.
        self.net = TestNet() if netns else None

    # -------------------------------------------------------------- start

    @property
    def settings(self) -> Settings:
        return self.base.with_(etcd=self.info["etcd"], broker=self.info["broker"],
                               cluster=self.info["cluster"])

    def start(self, timeout: float = 60.0) -> LocalCluster:
        if (self.dir / "cluster.json").exists():
            old = json.loads((self.dir / "cluster.json").read_text())
            if any(alive(p["pid"]) for p in old.get("processes", [])):
                raise ClusterError(f"a cluster is already running from {self.dir}; `corral down` first")
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            if self.net is not None:
                self.net.create()
            etcd = self._start_etcd()
            broker = self._start_redis_ha() if self.redis_ha else self._start_redis()
            self.info = {"etcd": etcd, "broker": broker, "cluster": self.base.cluster}
            for i in range(1, self.n_schedulers + 1):
                self.start_scheduler(f"sched-{i}")
            for j in range(1, self.n_nodes + 1):
                self.start_node(f"node-{j}")
            if self.with_flower:
                self._start_flower()
            self.save()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, role: str, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        logpath = self.dir / "logs" / f"{name}.log"
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        with open(logpath, "ab") as logfile:
            popen = subprocess.Popen(
                args, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=full_env, start_new_session=True, cwd=self.dir,
            )
        proc = Proc(role, name, popen.pid, str(logpath), args)
        self.procs = [p for p in self.procs if p.name != name] + [proc]
        return proc

    def _start_etcd(self) -> str:
        binary = require_binary("etcd", "etcd-server")
        members = [(f"etcd-{i}", free_port(), free_port()) for i in range(1, self.etcd_members + 1)]
        initial = ",".join(f"{n}=http://127.0.0.1:{peer}" for n, _, peer in members)
        token = secrets.token_hex(6)
        for name, client, peer in members:
            self._spawn("etcd", name, [
                binary, "--name", name, "--data-dir", str(self.dir / name),
                "--listen-client-urls", ",".join(f"http://{a}:{client}" for a in self._listen()),
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--quota-backend-bytes", str(self.base.etcd_quota),  # the quota admission knows
            ])
        endpoints = ",".join(f"127.0.0.1:{c}" for _, c, _ in members)
        self._wait(lambda: self._etcd_ok(endpoints), 30, "etcd did not answer")
        return endpoints

    def _etcd_ok(self, endpoints: str) -> bool:
        try:
            client = connect(self.base.with_(etcd=endpoints), timeout=1)
            client.get("/corral/ping")
            client.close()
            return True
        except Exception:
            return False

    def _start_redis(self, name: str = "redis", primary: int | None = None) -> str:
        """One redis-server (`primary`: as a replica of the one on that port); its URL."""
        binary = require_binary("redis-server", "redis-server")
        port = free_port()
        data = self.dir / name
        data.mkdir(parents=True, exist_ok=True)
        # Persistence where it matters: an append-only file synced every second keeps the
        # queues, results and fences through a restart (at most about a second is lost).
        conf = data / "redis.conf"  # the password in a file only its owner reads, never argv
        conf.write_text("".join(f"{k} {self.redis_password}\n" for k in ("requirepass", "masterauth"))
                        if self.redis_password else "")
        os.chmod(conf, 0o600)
        args = [binary, str(conf), "--port", str(port), "--bind", *self._listen(), "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data),
                "--protected-mode", "yes"]
        if primary is not None:
            args += ["--replicaof", "127.0.0.1", str(primary)]
        self._spawn("redis", name, args)
        auth = f":{self.redis_password}@" if self.redis_password else ""
        url = f"redis://{auth}127.0.0.1:{port}/0"

        def ok() -> bool:
            import redis

            try:
                return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
            except Exception:
                return False

        self._wait(ok, 20, f"{name} did not answer")
        return url

    def _start_redis_ha(self) -> str:
        """A primary, a replica and three sentinels that fail over within a few seconds;
        the broker URL names the sentinels (corral.base.broker)."""
        primary = self._start_redis("redis")
        port = int(primary.rsplit(":", 1)[1].split("/")[0])
        self._start_redis("redis-replica", primary=port)
        master = self.base.redis_master
        auth = f":{self.redis_password}@" if self.redis_password else ""
        urls = []
        for i in range(1, 4):
            sport = free_port()
            conf = self.dir / f"sentinel-{i}.conf"
            conf.write_text("\n".join([
                f"port {sport}", "bind 127.0.0.1", f"dir {self.dir}",
                f"sentinel monitor {master} 127.0.0.1 {port} 2",
                *([f"sentinel auth-pass {master} {self.redis_password}"] if self.redis_password else []),
                f"sentinel down-after-milliseconds {master} 1000",
                f"sentinel failover-timeout {master} 5000",
                f"sentinel parallel-syncs {master} 1", ""]))
            os.chmod(conf, 0o600)  # holds the password
            self._spawn("sentinel", f"sentinel-{i}",
                        [require_binary("redis-server", "redis-server"), str(conf), "--sentinel"])
            urls.append(f"sentinel://{auth}127.0.0.1:{sport}")
        url = ";".join(urls) + "/0"

        def ok() -> bool:
            from corral.base import broker

            try:
                return bool(broker.client(url, master, socket_timeout=1).ping())
            except Exception:
                return False

        self._wait(ok, 30, "the sentinels did not find the primary")
        return url

    def _listen(self) -> list[str]:
        return ["127.0.0.1"] + ([self.net.gateway] if self.net is not None else [])

    def start_scheduler(self, sid: str) -> Proc:
        args = [sys.executable, "-m", "corral.cli", "scheduler", "--id", sid]
        settings = self.settings
        if self.net is not None:
            args = self.net.add_host(sid) + args
            gateway = self.net.gateway
            settings = settings.with_(etcd=settings.etcd.replace("127.0.0.1", gateway),
                                      broker=settings.broker.replace("127.0.0.1", gateway))
        return self._spawn("scheduler", sid, args, settings.to_env())

    def restart(self, name: str) -> Proc:
        """Start a stopped process of this cluster again, as it was started."""
        proc = self.proc(name)
        if proc.role == "scheduler":
            return self.start_scheduler(name)
        if proc.role == "node":
            return self.start_node(name)
        return self._spawn(proc.role, name, proc.args)

    def partition(self, sid: str) -> None:
        """Cut scheduler `sid` off from etcd and Redis (it keeps running)."""
        assert self.net is not None, "partitions need LocalCluster(netns=True)"
        self.net.partition(sid)

    def heal(self, sid: str) -> None:
        assert self.net is not None
        self.net.heal(sid)

    def start_node(self, name: str, gpus: int | None = None) -> Proc:
        gpus = self.n_gpus if gpus is None else gpus
        args = [sys.executable, "-m", "corral.cli", "node", "--name", name,
                "--log-dir", str(self.dir / "logs"), "--fault-file", str(self.fault_file(name)),
                "--metrics-port", "0"]
        if gpus is not None:
            args += ["--fake-gpus", str(gpus)]
        faulty = [f.split(":", 1)[1] for f in self.faulty if f.split(":", 1)[0] == name]
        if faulty:
            args += ["--faulty-gpus", ",".join(faulty)]
        return self._spawn("node", name, args, self.settings.to_env())

    def fault_file(self, node: str) -> Path:
        """Where a simulated node reads injected NVML health signals ({index: reason})."""
        return self.dir / f"{node}.gpu-faults.json"

    def _start_flower(self) -> None:
        port = free_port()
        password = secrets.token_hex(8)
        # Credentials through the environment (Flower reads FLOWER_<OPTION>), never argv:
        # any local user can read a process's command line.
        self._spawn("flower", "flower", [
            sys.executable, "-m", "celery", "-A", "corral.tasks.flower", "flower",
            f"--port={port}", "--address=127.0.0.1",
        ], {**self.settings.to_env(), "FLOWER_BASIC_AUTH": f"corral:{password}"})
        self.info["flower"] = f"http://127.0.0.1:{port}"
        self.info["flower_user"] = f"corral:{password}"

    # ---------------------------------------------------------- inspect

    def save(self) -> None:
        data = dict(self.info)
        data.setdefault("flower", "")
        data["processes"] = [{"role": p.role, "name": p.name, "pid": p.pid} for p in self.procs]
        data["logs"] = str(self.dir / "logs")
        data["state"] = {"procs": [asdict(p) for p in self.procs]}
        path = self.dir / "cluster.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)  # holds the Redis password
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: str | Path) -> LocalCluster:
        path = Path(state_dir).resolve() / "cluster.json"
        if not path.exists():
            raise ClusterError(f"no cluster.json in {path.parent}: is a cluster running from there?")
        data = json.loads(path.read_text())
        cluster = cls(state_dir, settings=Settings(cluster=data["cluster"]))
        cluster.info = {k: v for k, v in data.items() if k not in ("processes", "state", "logs")}
        cluster.procs = [Proc(**p) for p in data.get("state", {}).get("procs", [])]
        return cluster

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def wait_ready(self, timeout: float = 60.0) -> None:
        keys = Keys(self.info["cluster"])
        client = connect(self.settings)
        want_nodes = {p.name for p in self.procs if p.role == "node"}

        def waiting_for() -> list[str]:
            """What is not ready yet: a leader, a node, a GPU worker consuming its queue."""
            self._check_alive()
            missing = [] if get_json(client, keys.leader) else ["a leader"]
            nodes = prefix_json(client, keys.node())
            for name in sorted(want_nodes):
                info = nodes.get(name)
                if info is None:
                    missing.append(f"node {name}")
                    continue
                ready = set(info.get("ready") or ())
                missing += [f"worker {name}:{g['index']}" for g in info.get("gpus", [])
                            if g["index"] not in ready]
            if self.info.get("flower") and not _answers(self.info["flower"]):
                missing.append("Flower")  # its start-up takes a core for seconds: not during the first tasks
            return missing

        try:
            self._wait(lambda: not waiting_for(), timeout,
                       "cluster did not become ready (a leader, every node, every GPU worker consuming)",
                       waiting_for)
            gpus = sum(len(info.get("gpus", [])) for info in prefix_json(client, keys.node()).values())
        finally:
            client.close()
        self._warm_up(gpus, timeout)

    def _warm_up(self, gpus: int, timeout: float) -> None:
        """A few `corral.echo` tasks through the whole path (ingress, the leader, the GPU
        queues, the status stream) in a session of their own, closed after (its GPUs move at
        once): the leader then knows the echo's run time (a user's first small tasks are
        batched at once) and every connection is made. `corral up` returns after it. Not
        with simulated faulty GPUs: it would quarantine them before anyone watches."""
        if not gpus or self.faulty:
            return
        from corral.client import Client

        client = Client(self.settings)
        try:
            with client.session(WARM_UP_SESSION) as session:
                client.wait(session.map("corral.echo", [{"warm-up": i} for i in range(8 * gpus)]),
                            timeout=timeout)
        finally:
            client.close()

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.role in ("etcd", "redis") and not alive(p.pid):
                raise ClusterError(f"{p.name} exited; see {p.log}")

    @staticmethod
    def _wait(pred: Any, timeout: float, what: str, missing: Any = None) -> None:
        """Wait for `pred`; `missing()` names what is still missing, for the error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        detail = f" (still waiting for: {', '.join(missing())})" if missing is not None else ""
        raise ClusterError(f"{what} within {timeout:.0f} s{detail}")

    # ------------------------------------------------------------- stop

    def kill(self, name: str, sig: int = signal.SIGKILL, group: bool = True) -> None:
        pid = self.proc(name).pid
        if group:
            kill_group(pid, sig)
        else:
            os.kill(pid, sig)

    def stop(self) -> None:
        # Schedulers first, so that nobody re-routes while the nodes go away.
        order = {"flower": 0, "scheduler": 1, "node": 2, "sentinel": 3, "redis": 4, "etcd": 5}
        for role in sorted(order, key=order.get):
            pids = [p.pid for p in self.procs if p.role == role]
            if pids:
                stop_groups(pids, grace=10.0)
        if self.net is not None:
            self.net.remove()
        path = self.dir / "cluster.json"
        if path.exists():
            path.unlink()
