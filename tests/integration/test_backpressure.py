"""A backlog past the high-water mark: producers are refused with the reason, nothing
admitted is lost, dispatch goes on, and new work is taken again once the backlog drains."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.base.config import Settings
from corral.client import Backpressure, Client
from corral.local import LocalCluster
from tests.conftest import running_cluster, wait_until

MARK = 100


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=4, schedulers=3,
                               settings=Settings(cluster="local", max_live_tasks=MARK))


def test_a_backlog_past_the_mark_is_refused_with_its_reason_and_work_is_taken_again_once_drained(
        client: Client) -> None:
    handles = client.map("corral.sleep", [{"seconds": 0.2, "i": i} for i in range(3 * MARK)])
    wait_until(lambda: client.admission().get("open") is False, 30, "the door closed")
    with pytest.raises(Backpressure, match="unfinished tasks"):
        client.submit("corral.echo", "too soon")
    records = client.wait(handles, timeout=300)
    admitted = [r for r in records.values() if r["state"] != "REJECTED"]
    refused = [r for r in records.values() if r["state"] == "REJECTED"]
    assert MARK <= len(admitted) < 3 * MARK and refused
    assert all(r["state"] == "SUCCEEDED" for r in admitted)
    assert all([a["state"] for a in r["attempts"]].count("SUCCEEDED") == 1 for r in admitted)
    assert all("refused, submit again later" in r["reason"] and "unfinished tasks" in r["reason"]
               for r in refused)
    wait_until(lambda: client.admission().get("open") is True, 30, "the door open again")
    assert client.submit("corral.echo", "welcome back").result(timeout=30) == "welcome back"
