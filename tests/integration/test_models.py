"""Real models on a local cluster: embeddings, OCR and a text detector through pipelines into
SQL rows that match the models run directly, and a bad input in a batch that fails alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa

from corral import pipeline_run as runner
from corral.base.config import Settings
from corral.base.etcd import prefix_json
from corral.client import Client, Retry
from corral.local import LocalCluster
from corral.pipelines import samples
from corral.pipelines.spec import load
from corral.tasks import embeddings, media, ocr
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


def run_example(client: Client, name: str, source: Path, db: Path) -> runner.RunReport:
    spec = load(EXAMPLES / f"{name}.yaml")
    spec = spec.model_copy(update={
        "source": spec.source.model_copy(update={"path": str(source)}),
        "sink": spec.sink.model_copy(update={"url": f"sqlite:///{db}"})})
    report = runner.run(client, spec, timeout=300)
    assert report.failed == {}
    return report


def test_the_ocr_pipeline_reads_what_the_model_reads_directly(client: Client, tmp_path: Path) -> None:
    images = samples.write_images(tmp_path / "images")
    run_example(client, "ocr", tmp_path / "images", tmp_path / "ocr.db")
    with sa.create_engine(f"sqlite:///{tmp_path / 'ocr.db'}").connect() as conn:
        query = sa.text("select frame, line, text from ocr order by frame, line")
        got = [tuple(r) for r in conn.execute(query)]
    engine = ocr.Engine()
    direct = [(frame, i, found["text"]) for frame, path in enumerate(images)
              for i, found in enumerate(engine.read(cv2.imread(str(path))))]
    assert got == direct
    assert any("segmentation" in text for _, _, text in got)  # the page's heading, read


def test_the_text_detector_finds_in_video_frames_what_it_finds_directly(
        client: Client, tmp_path: Path) -> None:
    clip = samples.write_page_video(tmp_path / "page.avi", frames=20)
    report = run_example(client, "textdet", clip, tmp_path / "det.db")
    assert report.frames == 20
    with sa.create_engine(f"sqlite:///{tmp_path / 'det.db'}").connect() as conn:
        got = [tuple(r) for r in conn.execute(sa.text("select frame, region, x, y, w, h from textdet "
                                                      "order by frame, region"))]
    engine = ocr.Engine()
    direct = [(frame, i, d["x"], d["y"], d["w"], d["h"])
              for frame, image in media.frames({"kind": "video", "path": str(clip), "count": 20})
              for i, d in enumerate(engine.detect(image))]
    assert got == direct and len({frame for frame, *_ in got}) == 20  # text in every frame
