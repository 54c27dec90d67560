"""Finished tasks leave etcd for the history store, and read the same from there; a leader
killed while records move loses none and doubles none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from corral import waiting
from corral.base.config import Settings
from corral.base.etcd import connect, prefix_json
from corral.base.keys import Keys
from corral.client import Client
from corral.local import LocalCluster
from corral.scheduler.records import unpack_done
from tests.conftest import running_cluster, wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3)


def in_etcd(cluster: LocalCluster, prefix: str) -> dict[str, object]:
    etcd = connect(cluster.settings)
    try:
        return prefix_json(etcd, prefix)
    finally:
        etcd.close()


def moved(cluster: LocalCluster, task_ids: list[str]) -> bool:
    return not set(task_ids) & set(in_etcd(cluster, Keys(cluster.settings.cluster).task()))


def test_a_finished_task_reads_the_same_from_history_as_when_live(cluster: LocalCluster,
                                                                 client: Client) -> None:
    handle = client.submit("corral.echo", {"x": 1})
    live = client.wait([handle], timeout=30)[handle.id]
    wait_until(lambda: moved(cluster, [handle.id]), 30, "the record to leave etcd")
    assert client.task(handle.id) == live
    assert handle.state() == "SUCCEEDED" and handle.result(timeout=5) == {"x": 1}
    assert client.wait([handle], timeout=5)[handle.id] == live
    assert client.results([handle]) == [{"x": 1}]
    shown = subprocess.run([sys.executable, "-m", "corral.cli", "task", handle.id],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, **cluster.settings.to_env()})
    assert shown.returncode == 0 and "SUCCEEDED" in shown.stdout, shown.stderr


def test_a_wait_whose_history_lookup_came_too_early_asks_again(cluster: LocalCluster) -> None:
    """Absent from etcd and not yet in the history store when first looked up, with no etcd
    event to follow: the wait reads again after RECHECK seconds instead of waiting on."""
    answers = [[None], [{"id": "late", "state": "SUCCEEDED"}]]
    etcd = connect(cluster.settings)
    try:
        done = waiting.wait_for(etcd, Keys(cluster.settings.cluster).task(), {"late"},
                                lambda ids: answers.pop(0) if len(answers) > 1 else answers[0],
                                timeout=waiting.RECHECK[0] * 4)
    finally:
        etcd.close()
    assert done["late"]["state"] == "SUCCEEDED"


def test_a_resubmitted_id_of_a_task_in_history_is_ignored(cluster: LocalCluster, client: Client) -> None:
    first = client.submit("corral.echo", {"v": "first"}, task_id="history-dedup")
    client.wait([first], timeout=30)
    wait_until(lambda: moved(cluster, [first.id]), 30, "the record to leave etcd")
    client.submit("corral.echo", {"v": "second"}, task_id="history-dedup")
    later = client.submit("corral.echo", {"v": "later"})
    client.wait([later], timeout=30)  # submitted after the duplicate: that one was handled
    assert client.task(first.id)["args"] == {"v": "first"}
    assert first.result() == {"v": "first"}


@pytest.mark.slow
def test_killing_the_leader_while_tasks_move_to_history_loses_none_and_doubles_none(
        cluster: LocalCluster, client: Client) -> None:
    keys = Keys(cluster.settings.cluster)
    handles = client.map("corral.sleep", [{"seconds": 0.01}] * 1500)
    kills = 0
    deadline = time.monotonic() + 120
    while kills < 4 and time.monotonic() < deadline:
        status = client.status()
        if status["tasks"]["succeeded"] >= 150 * (kills + 1) and status.get("leader", {}).get("id"):
            leader = status["leader"]["id"]
            cluster.kill(leader, signal.SIGKILL)
            kills += 1
            wait_until(lambda old=leader: client.status().get("leader", {}).get("id") not in (None, old),
                       30, "a new leader")
            cluster.start_scheduler(leader)
        time.sleep(0.2)
    assert kills == 4
    records = client.wait(handles, timeout=240)
    assert Counter(r["state"] for r in records.values()) == {"SUCCEEDED": 1500}
    for r in records.values():
        assert [a["state"] for a in r["attempts"]].count("SUCCEEDED") == 1, r["id"]
    ids = [h.id for h in handles]
    wait_until(lambda: moved(cluster, ids), 60, "every record to leave etcd")
    assert all(r is not None and r["state"] == "SUCCEEDED" for r in client.finished(ids))
    in_chunks = Counter(task_id for chunk in in_etcd(cluster, keys.done()).values()
                        for task_id in unpack_done(chunk))  # type: ignore[arg-type]
    assert all(in_chunks[t] == 1 for t in ids), "a task's summary in two chunks"


POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_answers() -> bool:
    import sqlalchemy as sa

    try:
        with sa.create_engine(POSTGRES, connect_args={"connect_timeout": 2}).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('history')}/history.db"
    if not postgres_answers():
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES}")
    return POSTGRES


@pytest.fixture(scope="module")
def sql_cluster(tmp_path_factory: pytest.TempPathFactory, sql_url: str) -> Iterator[LocalCluster]:
    name = f"h{uuid.uuid4().hex[:12]}"  # rows of this run only, in a database others share
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=2, schedulers=1,
                               settings=Settings(cluster=name, history=sql_url))


def test_an_sql_history_store_holds_finished_tasks_as_rows(sql_cluster: LocalCluster, sql_url: str) -> None:
    import sqlalchemy as sa

    client = Client(sql_cluster.settings)
    handles = client.map("corral.echo", [{"i": i} for i in range(20)])
    client.wait(handles, timeout=60)
    wait_until(lambda: moved(sql_cluster, [h.id for h in handles]), 30, "the records to leave etcd")
    assert client.results(handles) == [{"i": i} for i in range(20)]
    assert handles[0].state() == "SUCCEEDED"
    with sa.create_engine(sql_url).connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT task_id, state FROM corral_history WHERE cluster = :c"),
                                 {"c": sql_cluster.settings.cluster}).all())
    assert {rows[h.id] for h in handles} == {"SUCCEEDED"}
    client.close()


@pytest.fixture(scope="module")
def short_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=2, schedulers=1,
                               settings=Settings(cluster="window", dedup_window=2.0))


def test_past_the_dedup_window_the_history_store_still_knows_an_id(short_window: LocalCluster) -> None:
    client = Client(short_window.settings)
    first = client.submit("corral.echo", {"v": "first"}, task_id="old-one")
    client.wait([first], timeout=30)
    keys = Keys(short_window.settings.cluster)
    wait_until(lambda: moved(short_window, ["old-one"]), 30, "the record to leave etcd")
    wait_until(lambda: not in_etcd(short_window, keys.done()), 30, "the dedup window to pass it")
    client.submit("corral.echo", {"v": "again"}, task_id="old-one")  # a duplicate, found in history
    down = client.submit("corral.echo", {"v": "down"}, after=["old-one"])  # its upstream, from history
    assert client.wait([down], timeout=30)[down.id]["state"] == "SUCCEEDED"
    assert client.task("old-one")["args"] == {"v": "first"} and first.result() == {"v": "first"}
    assert "old-one" not in in_etcd(short_window, keys.task())
    client.close()
