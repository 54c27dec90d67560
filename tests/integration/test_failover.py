"""M3 and M6 with real processes: cold restart from etcd alone, and a deposed leader is inert."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from corral.base.etcd import connect
from corral.base.keys import Keys
from corral.client import Client
from corral.local import LocalCluster
from corral.scheduler.election import Election
from corral.scheduler.mirror import Mirror
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3)




def test_a_lease_refresh_answered_before_a_pause_does_not_outlive_the_pause(
        cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    etcd = connect(cluster.settings)
    try:
        election = Election(etcd, Keys("lease-probe"), "probe", ttl=2)
        assert election.campaign() is not None and election.holds()
        answer = etcd.refresh_lease

        def paused(lease_id: int) -> list[object]:
            out = list(answer(lease_id))  # etcd says the lease is alive...
            time.sleep(2.0)  # ...then the process stops for longer than the lease
            return out

        monkeypatch.setattr(etcd, "refresh_lease", paused)
        election.keepalive()
        assert not election.holds()  # counted from when it asked, not from the answer
    finally:
        etcd.close()


def test_a_followers_mirror_tells_it_at_once_when_the_leader_key_goes(cluster: LocalCluster) -> None:
    etcd = connect(cluster.settings)
    keys = Keys("vacancy-probe")
    vacant = threading.Event()
    mirror = Mirror(etcd, keys.root, lambda: int(etcd.put(keys.root + "mark", "{}").header.revision),
                    keys.leader[len(keys.root):], vacant)
    try:
        lease = etcd.lease(60)
        etcd.put(keys.leader, "{}", lease=lease)
        mirror.start()
        wait_until(lambda: "leader" in mirror.view(""), 10, "the mirror to hold the leader key")
        assert not vacant.is_set()
        lease.revoke()  # what etcd does when the leader's lease expires
        assert vacant.wait(10)
    finally:
        mirror.stop()
        etcd.close()


def schedulers(cluster: LocalCluster) -> list[str]:
    return [p.name for p in cluster.procs if p.role == "scheduler"]


def test_every_task_completes_after_all_schedulers_are_killed_and_restarted(
    cluster: LocalCluster, client: Client
) -> None:
    handles = client.map("corral.sleep", [{"seconds": 0.05}] * 500)
    wait_until(lambda: client.status()["tasks"]["succeeded"] >= 20, 30, "work to flow")
    for name in schedulers(cluster):
        cluster.kill(name, signal.SIGKILL)
    st = client.status()["tasks"]
    print(f"\nall schedulers killed with {st['pending']} pending, {st['queued']} queued, "
          f"{st['running']} running")
    time.sleep(1)
    for name in schedulers(cluster):
        cluster.start_scheduler(name)
    records = client.wait(handles, timeout=180)
    assert Counter(r["state"] for r in records.values()) == {"SUCCEEDED": 500}
    for r in records.values():
        assert [a["state"] for a in r["attempts"]].count("SUCCEEDED") == 1


def test_a_deposed_leader_writes_nothing_and_publishes_nothing(cluster: LocalCluster, client: Client) -> None:
    wait_until(lambda: client.status()["leader"]["id"] is not None, 10, "a leader")
    old = client.status()["leader"]["id"]
    handles = client.map("corral.sleep", [{"seconds": 0.05}] * 300)
    wait_until(lambda: client.status()["tasks"]["running"] + client.status()["tasks"]["queued"] > 0,
               10, "work in flight")
    stopped = time.time()
    os.kill(cluster.proc(old).pid, signal.SIGSTOP)
    more = client.map("corral.echo", [{"n": i} for i in range(50)])  # waits in the old inbox too
    try:
        wait_until(lambda: client.status()["leader"]["id"] not in (None, old), 10, "a new leader")
    finally:
        pushed: list[str] = []
        r = redis.Redis.from_url(cluster.settings.broker)
        broken: list[str] = []
        listening, marker = threading.Event(), threading.Event()

        def watch() -> None:
            try:
                with r.monitor() as monitor:
                    listening.set()
                    while not marker.is_set():  # every command until our marker
                        try:
                            command = monitor.next_command()
                        except redis.ConnectionError:
                            raise
                        except Exception as exc:  # a line MONITOR prints that redis-py cannot parse
                            broken.append(repr(exc))
                            continue
                        text = command.get("command", "")
                        if text.startswith("LPUSH corral.gpu."):
                            pushed.append(text)
                        elif text.startswith("LPUSH corral.nothing"):
                            marker.set()
            except Exception as exc:  # reported by the assertion below
                broken.append(repr(exc))
            finally:
                listening.set()

        spy = threading.Thread(target=watch, daemon=True)
        spy.start()
        assert listening.wait(5), "MONITOR did not start"
        time.sleep(0.3)
        resumed = time.time()
        os.kill(cluster.proc(old).pid, signal.SIGCONT)
    time.sleep(4)  # the old leader wakes, tries to act, is fenced, steps down
    r.lpush("corral.nothing", "x")  # proves the monitor was still listening; ends the watch
    spy.join(timeout=5)
    records = client.wait(handles + more, timeout=120)
    assert all(r["state"] == "SUCCEEDED" for r in records.values())
    late = [e for r in records.values() for e in r["events"] if e.get("by") == old and e["time"] >= resumed]
    assert late == [], f"the deposed leader recorded {len(late)} event(s)"
    # The window is not vacuous: the monitor listened from before the resume to after it
    # (it saw our marker). The new leader usually publishes in it too, but need not: it
    # may have had nothing left to place by then.
    assert marker.is_set(), f"the monitor stopped listening (errors: {broken[:3]})"
    # A publish the old leader had begun when it was stopped (a pipeline larger than one
    # socket write, part of it sent) may land after it resumes: it holds only attempts it
    # recorded while it led, and their fences make a late arrival harmless. Nothing it
    # decided after the stop may go out.
    mine = [p for p in pushed if f"corral-scheduler/{old}@" in p]
    dispatched = {e["attempt"]: e for rec in records.values() for e in rec["events"]
                  if e["event"] == "dispatched"}
    for text in mine:
        for body in re.findall(r'"body":"([A-Za-z0-9+/=]+)"', text):
            for attempt in re.findall(r"[0-9a-f]{32}\.a\d+", base64.b64decode(body).decode()):
                decided = dispatched.get(attempt)
                assert decided is not None and decided["by"] == old and decided["time"] < stopped, \
                    f"the deposed leader published attempt {attempt}, not recorded before it stopped"
    assert json.loads(json.dumps(client.status()))["leader"]["id"] != old


def test_a_pipeline_writes_every_row_once_across_a_leader_kill(
    cluster: LocalCluster, client: Client, tmp_path
) -> None:
    import sqlalchemy as sa

    from corral import pipeline_run as runner
    from corral.pipelines.spec import parse

    (tmp_path / "in.txt").write_text("".join(f"line {i}\n" for i in range(300)))
    spec = parse({"name": "ha", "source": {"kind": "text", "path": str(tmp_path / "in.txt"), "segment": 5},
                  "stages": [{"name": "count", "algorithm": "text.words"},
                             {"name": "pause", "algorithm": "corral.sleep", "args": {"seconds": 0.05},
                              "after": ["count"]}],
                  "sink": {"kind": "sql", "url": f"sqlite:///{tmp_path / 'rows.db'}", "table": "t",
                           "from": ["count"]}})
    started = time.time()
    report = runner.submit(client, spec, "ha-run")
    wait_until(lambda: (client.task("ha-run.0000005.sink") or {}).get("state") == "SUCCEEDED", 60,
               "some items written")
    leader = client.status()["leader"]["id"]
    cluster.kill(leader, signal.SIGKILL)
    runner.finish(client, report, started, timeout=180)
    cluster.start_scheduler(leader)
    assert (report.succeeded, report.rows, report.failed) == (60, 300, {})
    with sa.create_engine(f"sqlite:///{tmp_path / 'rows.db'}").connect() as conn:
        assert conn.execute(sa.text("select count(*), count(distinct data) from t")).one() == (300, 300)
    for i in range(60):
        for stage in ("count", "pause", "sink"):
            attempts = client.task(f"ha-run.{i:07d}.{stage}")["attempts"]
            assert [a["state"] for a in attempts].count("SUCCEEDED") == 1


def test_schedulers_write_no_records_or_campaigns_while_a_leader_holds(cluster: LocalCluster) -> None:
    """Followers campaign with a read and each replica writes its record once per lease:
    while a leader holds, no replica writes the election's keys (each write would be a raft
    proposal, a disk sync on every member, several times a second)."""
    from corral.base.etcd import connect
    from corral.base.keys import Keys

    keys = Keys(cluster.settings.cluster)
    etcd = connect(cluster.settings)
    wait_until(lambda: etcd.get(keys.leader)[1] is not None, 30, "a leader")
    time.sleep(3.0)  # replicas restarted by earlier tests have registered
    start = etcd.get_response("/").header.revision + 1
    time.sleep(3.0)
    written: list[str] = []
    events, cancel = etcd.watch_prefix(keys.root, start_revision=start)
    stopper = threading.Timer(1.0, cancel)
    stopper.start()
    for event in events:
        written.append(event.key.decode())
    stopper.cancel()
    assert not [k for k in written if k == keys.leader or k.startswith(keys.scheduler(""))]
