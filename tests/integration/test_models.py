"""Real models on a local cluster: text.embed through a pipeline into SQL rows that match the
model run directly, and a bad input in a batch that fails alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from corral import pipeline_run as runner
from corral.base.config import Settings
from corral.base.etcd import prefix_json
from corral.client import Client, Retry
from corral.local import LocalCluster
from corral.pipelines.spec import load
from corral.tasks import embeddings
from tests.conftest import running_cluster

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "pipelines" / "examples"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running_cluster(tmp_path_factory, nodes=1, gpus=2, schedulers=1,
                               settings=Settings(cluster="models"))


def test_the_embedding_pipeline_writes_the_vectors_the_model_gives_directly(
        client: Client, tmp_path: Path) -> None:
    spec = load(EXAMPLES / "embed.yaml")
    db = tmp_path / "embeddings.db"
    spec = spec.model_copy(update={"sink": spec.sink.model_copy(update={"url": f"sqlite:///{db}"})})
    report = runner.run(client, spec, timeout=180)
    assert report.failed == {} and report.rows == 10
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        got = conn.execute(sa.text("select line, text, vector from embeddings order by line")).all()
    lines = (EXAMPLES / "texts" / "gettysburg.txt").read_text().splitlines()
    assert [(line, text) for line, text, _ in got] == list(enumerate(lines))
    direct = embeddings.load().embed(lines)
    stored = np.array([json.loads(v) if isinstance(v, str) else v for _, _, v in got], np.float32)
    assert np.allclose(stored, direct, atol=1e-5)


def test_a_bad_input_among_embeddings_fails_alone_and_quarantines_nothing(client: Client) -> None:
    args: list[dict] = [{"text": f"sentence number {i}"} for i in range(24)]
    args[9] = {"image": "not text"}
    handles = client.map("text.embed", args, retry=Retry(local=0, hosts=1))
    records = client.wait(handles, timeout=120)
    bad = handles[9].id
    assert records[bad]["state"] == "FAILED" and "text.embed takes" in records[bad]["error"]["message"]
    assert {records[h.id]["state"] for h in handles if h.id != bad} == {"SUCCEEDED"}
    health = prefix_json(client.etcd, client.keys.gpu_health())
    assert not [k for k, h in health.items() if h.get("state") == "quarantined"]
    result = client.results([handles[0]])[0]
    assert result["dim"] == 384 and result["device"] == "cpu" and result["model"] == "all-MiniLM-L6-v2"
