"""M9 on a real cluster: pipelines from video, text and a live stream to SQL and Redis rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from corral import pipeline_run as runner
from corral.client import Client
from corral.local import LocalCluster
from corral.pipelines.clips import disc_x, write_clip
from corral.pipelines.sources import SPOOL_MARKER
from corral.pipelines.spec import parse
from tests.conftest import running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=3, schedulers=1)


def video_pipeline(clip: Path, db: Path, **changes: object) -> dict:
    return {
        "name": "bright", "session": "video",
        "source": {"kind": "video", "path": str(clip), "segment": 25},
        "stages": [{"name": "track", "algorithm": "vision.bright", "args": {"threshold": 128}},
                   {"name": "faces", "algorithm": "vision.faces"}],
        "sink": {"kind": "sql", "url": f"sqlite:///{db}", "table": "bright", "from": ["track"],
                 "columns": {"frame": "integer", "x": "float"}},
        "retry": {"local": 0, "hosts": 0},
        **changes,
    }


def rows(db: Path, run: str) -> list[tuple[int, float]]:
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.text("select frame, x from bright where run = :run order by frame"), {"run": run})]


def test_a_video_pipeline_writes_one_row_per_frame_with_what_each_frame_shows(
        client: Client, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", frames=100)
    spec = parse(video_pipeline(clip, tmp_path / "rows.db"))
    report = runner.run(client, spec, timeout=120)
    assert (report.items, report.succeeded, report.failed) == (4, 4, {})
    assert report.rows == report.frames == 100
    got = rows(tmp_path / "rows.db", report.run)
    assert [f for f, _ in got] == list(range(100))
    assert all(abs(x - disc_x(f)) < 1.0 for f, x in got)


def test_each_stage_waits_for_its_upstream_stage_and_gets_its_result(client: Client, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", frames=25)
    spec = parse(video_pipeline(clip, tmp_path / "rows.db", stages=[
        {"name": "track", "algorithm": "vision.bright"},
        {"name": "again", "algorithm": "corral.probe", "after": ["track"]}]))
    report = runner.run(client, spec, timeout=120)
    assert report.succeeded == 1
    track, again = (client.task(f"{report.run}.0000000.{s}") for s in ("track", "again"))
    assert again["inputs"] == {"track": [track["id"], track["attempts"][-1]["id"]]}
    assert again["attempts"][0]["dispatched"] >= track["attempts"][-1]["ended"] - 0.5


def test_running_the_same_run_again_submits_nothing_twice_and_rows_stay_single(
        client: Client, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", frames=50)
    spec = parse(video_pipeline(clip, tmp_path / "rows.db"))
    first = runner.run(client, spec, timeout=120)
    again = runner.run(client, spec, run_id=first.run, timeout=120)
    assert again.succeeded == 2 and again.rows == 50
    assert len(rows(tmp_path / "rows.db", first.run)) == 50
    assert len(client.task(f"{first.run}.0000000.track")["attempts"]) == 1


def test_a_stage_that_fails_for_good_cancels_the_rest_of_its_item_with_the_reason(
        client: Client, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", frames=50)
    spec = parse(video_pipeline(clip, tmp_path / "rows.db", stages=[
        {"name": "track", "algorithm": "vision.bright"},
        {"name": "broken", "algorithm": "corral.fail", "args": {"message": "model crashed"},
         "after": ["track"]}]))
    report = runner.run(client, spec, timeout=120)
    assert report.succeeded == 0 and sorted(report.failed) == [0, 1]
    assert "broken" in report.failed[0] and "ended FAILED" in report.failed[0]
    assert client.task(f"{report.run}.0000000.track")["state"] == "SUCCEEDED"
    assert client.task(f"{report.run}.0000000.sink")["state"] == "CANCELLED"
    assert not (tmp_path / "rows.db").exists()  # no sink ran: not even its table was made


def test_a_live_stream_is_processed_as_it_plays_into_redis_rows(
        client: Client, cluster: LocalCluster, tmp_path: Path) -> None:
    data = write_clip(tmp_path / "clip.avi", frames=60).read_bytes()
    fifo = tmp_path / "live"
    os.mkfifo(fifo)

    def play() -> None:  # a camera: the bytes arrive over about a second
        with fifo.open("wb") as out:
            for i in range(0, len(data), 8192):
                out.write(data[i : i + 8192])
                out.flush()
                time.sleep(0.01)

    threading.Thread(target=play, daemon=True).start()
    spec = parse({"name": "live", "source": {"kind": "stream", "path": str(fifo), "segment": 20},
                  "stages": [{"name": "track", "algorithm": "vision.bright"}],
                  "sink": {"kind": "redis", "table": "live"}})
    report = runner.run(client, spec, spool=tmp_path / "spool", timeout=120)
    assert (report.succeeded, report.rows, report.frames) == (3, 60, 60)
    stored = redis.Redis.from_url(cluster.settings.broker).hgetall(f"live:{report.run}")
    frames = sorted(json.loads(v)["frame"] for v in stored.values())
    assert frames == list(range(60))
    # Segments are deleted once written; the spool directory keeps only its marker.
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [SPOOL_MARKER]


def test_corral_pipeline_run_reports_rows_and_refuses_a_bad_file(
        cluster: LocalCluster, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("".join(f"line {i} has words\n" for i in range(30)))
    (tmp_path / "p.yaml").write_text(json.dumps({
        "name": "words", "source": {"kind": "text", "path": "in.txt", "segment": 10},
        "stages": [{"name": "count", "algorithm": "text.words"}],
        "sink": {"kind": "sql", "url": "sqlite:///words.db", "table": "words"}}))
    (tmp_path / "bad.yaml").write_text("name: x\nstages: []\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
           "CORRAL_ETCD": cluster.settings.etcd, "CORRAL_BROKER": cluster.settings.broker,
           "CORRAL_CLUSTER": cluster.settings.cluster}

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral.cli", "pipeline", *args], env=env,
                              capture_output=True, text=True, timeout=180)

    out = corral("run", str(tmp_path / "p.yaml"), "--wait", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["items"], report["succeeded"], report["rows"]) == (3, 3, 30)
    with sa.create_engine(f"sqlite:///{tmp_path / 'words.db'}").connect() as conn:
        assert conn.execute(sa.text("select count(*) from words")).scalar() == 30
    bad = corral("run", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "not a valid pipeline" in bad.stderr and "source" in bad.stderr
