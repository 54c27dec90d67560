"""PostgreSQL as a first-class sink (`corral[postgres]`): a pipeline's rows land in a real
PostgreSQL server exactly once, retried items included. Skipped, with the reason, when no
server answers on the standard port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from corral import pipeline_run as runner
from corral.client import Client
from corral.local import LocalCluster
from corral.pipelines import sinks
from corral.pipelines.clips import disc_x, write_clip
from corral.pipelines.spec import Sink, parse
from tests.conftest import running_cluster

pytestmark = pytest.mark.integration

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def answers() -> str | None:
    try:
        with sa.create_engine(URL, connect_args={"connect_timeout": 2}).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@pytest.fixture(scope="module")
def postgres() -> Iterator[sa.Engine]:
    why = answers()
    if why is not None:
        pytest.skip(f"no PostgreSQL server answers at {URL}: {why}")
    engine = sa.create_engine(URL)
    yield engine
    engine.dispose()


@pytest.fixture
def table(postgres: sa.Engine) -> Iterator[str]:
    name = f"frames_{uuid.uuid4().hex[:10]}"  # this test's own table, in a database others share
    yield name
    with postgres.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: sa.Engine) -> Iterator[LocalCluster]:
    # GPU node-1:0 fails every attempt (a simulated CUDA fault): items sent there are retried.
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=3, schedulers=1, faulty=["node-1:0"])


def test_two_attempts_of_one_items_sink_leave_its_rows_once(postgres: sa.Engine, table: str) -> None:
    sink = Sink(kind="sql", url=URL, table=table, columns={"frame": "integer"})
    sinks.write(sink, "run1", 0, {"track": {"rows": [{"frame": 0}, {"frame": 1}]}})
    sinks.write(sink, "run1", 0, {"track": {"rows": [{"frame": 0}, {"frame": 1}]}})  # the retry
    with postgres.connect() as conn:
        got = conn.execute(sa.text(f'SELECT item, frame FROM "{table}" ORDER BY frame')).all()
    assert [tuple(r) for r in got] == [(0, 0), (0, 1)]


def test_a_pipeline_into_postgresql_writes_every_frame_once_with_retried_items(
        cluster: LocalCluster, postgres: sa.Engine, table: str, tmp_path: Path) -> None:
    client = Client(cluster.settings)
    clip = write_clip(tmp_path / "clip.avi", frames=150)
    spec = parse({
        "name": "pg", "session": "video",
        "source": {"kind": "video", "path": str(clip), "segment": 25},
        "stages": [{"name": "track", "algorithm": "vision.bright", "args": {"threshold": 128}}],
        "sink": {"kind": "sql", "url": URL, "table": table, "from": ["track"],
                 "columns": {"frame": "integer", "x": "float"}},
        "retry": {"local": 0, "hosts": 3},
    })
    report = runner.run(client, spec, timeout=180)
    assert (report.items, report.succeeded, report.failed) == (6, 6, {})
    retried = [t for i in range(6) for s in ("track", "sink")
               if len((t := client.task(f"{report.run}.{i:07d}.{s}"))["attempts"]) > 1]
    assert retried, "no task was sent to the faulty GPU: nothing was retried"
    with postgres.connect() as conn:
        got = conn.execute(sa.text(f'SELECT frame, x FROM "{table}" WHERE run = :r ORDER BY frame'),
                           {"r": report.run}).all()
    assert [f for f, _ in got] == list(range(150))
    assert all(abs(x - disc_x(f)) < 1.0 for f, x in got)
    client.close()
