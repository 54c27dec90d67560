"""Pipelines (M9): the file, its expansion into tasks, sources, sinks and media algorithms."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from corral.pipelines import plan, sinks, sources
from corral.pipelines.clips import disc_x, write_clip
from corral.pipelines.spec import Sink, SpecError, load, parse
from corral.tasks.context import Context
from corral.tasks.media import bright, words

BASE = {
    "name": "p",
    "source": {"kind": "text", "path": "in.txt", "segment": 2},
    "stages": [{"name": "a", "algorithm": "text.words"},
               {"name": "b", "algorithm": "corral.echo", "after": ["a"]}],
    "sink": {"kind": "sql", "url": "sqlite:///out.db", "table": "t"},
}


def ctx() -> Context:
    return Context("t", "t.a1", "n", 0, "s")


def with_(**changes) -> dict:
    return {**BASE, **changes}


def test_a_valid_pipeline_parses_with_defaults() -> None:
    spec = parse(BASE)
    assert spec.session.name == "pipelines"
    assert spec.sink_stages() == ["b"]


@pytest.mark.parametrize(("changes", "says"), [
    ({"stages": [{"name": "a", "algorithm": "x", "after": ["b"]},
                 {"name": "b", "algorithm": "x", "after": ["a"]}]}, "cycle"),
    ({"stages": [{"name": "a", "algorithm": "x", "after": ["zz"]}]}, "'after' names no stage: zz"),
    ({"stages": [{"name": "a", "algorithm": "x"}, {"name": "a", "algorithm": "y"}]}, "unique"),
    ({"sink": {"kind": "sql", "table": "t"}}, "needs 'url'"),
    ({"sink": {"kind": "sql", "url": "sqlite://", "table": "drop table"}}, "table"),
    ({"sink": {"kind": "sql", "url": "sqlite://", "columns": {"x": "blob"}}}, "type 'blob'"),
    ({"source": {"kind": "radio", "path": "x"}}, "source.kind"),
    ({"stages": []}, "stages"),
    ({"stages": [{"name": "sink", "algorithm": "x"}]}, "name the stage otherwise"),
])
def test_an_invalid_pipeline_is_refused_with_the_field_at_fault(changes: dict, says: str) -> None:
    with pytest.raises(SpecError, match="not a valid pipeline") as err:
        parse(with_(**changes))
    assert says in str(err.value)


def test_a_file_that_is_not_yaml_is_refused_readably(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load(tmp_path / "missing.yaml")


def test_paths_in_a_pipeline_file_are_relative_to_it(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(BASE))
    spec = load(tmp_path / "p.yaml")
    assert spec.source.path == str(tmp_path / "in.txt")
    assert spec.sink.url == f"sqlite:///{tmp_path / 'out.db'}"


def test_an_item_becomes_a_task_per_stage_linked_upstream_first_and_a_sink_after_all() -> None:
    tasks = plan.expand(parse(BASE), "run1", 3, {"kind": "text", "lines": ["x"], "frames": 1})
    assert [t["task_id"] for t in tasks] == ["run1.0000003.a", "run1.0000003.b", "run1.0000003.sink"]
    assert "after" not in tasks[0]
    assert tasks[1]["after"] == {"a": "run1.0000003.a"}
    assert tasks[2]["after"] == {"a": "run1.0000003.a", "b": "run1.0000003.b"}
    assert tasks[2]["args"]["stages"] == ["b"]
    assert tasks[0]["args"]["item"]["lines"] == ["x"]


def test_a_text_source_is_cut_into_items_of_so_many_lines(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one two\nthree\n\nfour five six\nseven\n")
    spec = parse(with_(source={"kind": "text", "path": str(tmp_path / "in.txt"), "segment": 2}))
    found = list(sources.items(spec.source))
    assert [i["first"] for i in found] == [0, 2, 4]
    assert found[1]["lines"] == ["", "four five six"]
    rows = words({"item": found[1]}, ctx())["rows"]
    assert rows == [{"line": 2, "words": 0, "chars": 0, "longest": ""},
                    {"line": 3, "words": 3, "chars": 13, "longest": "four"}]


def test_a_source_matching_no_file_is_refused_readably(tmp_path: Path) -> None:
    spec = parse(with_(source={"kind": "images", "path": str(tmp_path / "*.png")}))
    with pytest.raises(SpecError, match="matches no file"):
        list(sources.items(spec.source))


def test_a_video_is_cut_into_segments_and_each_frame_is_found_where_it_was_drawn(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.avi", frames=30)
    spec = parse(with_(source={"kind": "video", "path": str(clip), "segment": 12}))
    found = list(sources.items(spec.source))
    assert [(i["start"], i["count"]) for i in found] == [(0, 12), (12, 12), (24, 6)]
    rows = bright({"item": found[1], "threshold": 128}, ctx())["rows"]
    assert [r["frame"] for r in rows] == list(range(12, 24))
    assert all(abs(r["x"] - disc_x(r["frame"])) < 1.0 for r in rows)


def test_a_sql_sink_writing_an_item_twice_leaves_one_copy_of_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rows.db'}"
    sink = Sink.model_validate({"kind": "sql", "url": url, "table": "t", "columns": {"frame": "integer"}})
    results = {"track": {"rows": [{"frame": 1, "x": 2.0}, {"frame": 2, "x": 3.0}]}}
    assert sinks.write(sink, "r", 0, results) == 2
    assert sinks.write(sink, "r", 0, results) == 2
    sinks.write(sink, "r", 1, {"track": {"rows": [{"frame": 3}]}})
    with sa.create_engine(url).connect() as conn:
        got = conn.execute(sa.text("select item, stage, row, frame from t order by item, row")).all()
    assert got == [(0, "track", 0, 1), (0, "track", 1, 2), (1, "track", 0, 3)]


def test_a_stage_result_without_rows_is_written_as_one_row() -> None:
    assert sinks.rows_of("s", {"faces": 2}) == [{"faces": 2}]
    assert sinks.rows_of("s", 7) == [{"value": 7}]
    with pytest.raises(TypeError, match="list of objects"):
        sinks.rows_of("s", {"rows": [1, 2]})


def test_an_images_source_groups_files_in_name_order_and_frames_are_numbered_across_groups(
        tmp_path: Path) -> None:
    import cv2
    import numpy as np

    for i in range(3):
        image = np.zeros((40, 60, 3), np.uint8)
        cv2.circle(image, (10 + 20 * i, 20), 4, (255, 255, 255), -1)
        cv2.imwrite(str(tmp_path / f"img{i}.png"), image)
    (tmp_path / "notes.txt").write_text("not an image")
    spec = parse(with_(source={"kind": "images", "path": str(tmp_path), "segment": 2}))
    found = list(sources.items(spec.source))
    assert [len(i["paths"]) for i in found] == [2, 1]
    rows = [r for item in found for r in bright({"item": item}, ctx())["rows"]]
    assert [(r["frame"], round(r["x"])) for r in rows] == [(0, 10), (1, 30), (2, 50)]
