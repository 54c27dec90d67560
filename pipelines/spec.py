"""The pipeline file: a source, a DAG of algorithm stages, and a sink (M9).

Validated whole before anything is submitted, so a bad file costs nothing: every problem
comes back as one readable `SpecError` naming the field at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral.base.retry import DEFAULT as DEFAULT_RETRY
from corral.base.retry import MAX_BACKOFF, MAX_HOSTS, MAX_LOCAL

NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,39}$"
SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
COLUMN_TYPES = ("integer", "float", "text", "boolean", "json")
RESERVED_COLUMNS = ("run", "item", "stage", "row", "data")


class SpecError(ValueError):
    """A pipeline file that cannot run, and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    kind: Literal["text", "images", "video", "stream"]
    path: str = Field(description="file, directory or glob; for a stream a URL, device or FIFO")
    segment: int = Field(50, ge=1, le=100_000,
                         description="frames per task (video, stream) or lines per task (text)")
    max_frames: int | None = Field(None, ge=1, description="stream: stop after this many frames")


class Stage(_Strict):
    name: str = Field(pattern=NAME)
    algorithm: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list, description="stages whose results it takes")


class Sink(_Strict):
    kind: Literal["sql", "redis"]
    url: str | None = Field(None, description="SQLAlchemy or Redis URL; redis defaults to the broker")
    url_env: str | None = Field(None, description="name of a worker environment variable holding the URL")
    table: str = Field("rows", description="SQL table, or Redis key prefix")
    columns: dict[str, str] = Field(default_factory=dict, description="SQL: typed columns taken from rows")
    from_: list[str] = Field(default_factory=list, alias="from",
                             description="stages whose rows are written; default: the last ones")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not SQL_NAME.match(value):
            raise ValueError(f"table {value!r}: use letters, digits and _ (up to 63)")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, kind in value.items():
            if not SQL_NAME.match(name) or name in RESERVED_COLUMNS:
                raise ValueError(f"column {name!r}: use letters, digits and _, not one of "
                                 f"{', '.join(RESERVED_COLUMNS)}")
            if kind not in COLUMN_TYPES:
                raise ValueError(f"column {name!r}: type {kind!r} is not one of {', '.join(COLUMN_TYPES)}")
        return value

    @model_validator(mode="after")
    def _where(self) -> Sink:
        if self.kind == "sql" and not (self.url or self.url_env):
            raise ValueError("a sql sink needs 'url' (e.g. sqlite:///rows.db) or 'url_env'")
        return self


class SessionSpec(_Strict):
    name: str = Field("pipelines", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    fixed_workers: int = Field(0, ge=0)
    share_ratio: float = Field(1.0, gt=0)


class Retry(_Strict):
    """The task retry policy of every stage (corral.base.retry: the same defaults and bounds)."""

    local: int = Field(DEFAULT_RETRY.local, ge=0, le=MAX_LOCAL)
    hosts: int = Field(DEFAULT_RETRY.hosts, ge=0, le=MAX_HOSTS)
    backoff: float = Field(DEFAULT_RETRY.backoff, ge=0, le=MAX_BACKOFF, allow_inf_nan=False)


class Pipeline(_Strict):
    name: str = Field(pattern=NAME)
    session: SessionSpec = Field(default_factory=SessionSpec)
    source: Source
    stages: list[Stage] = Field(min_length=1)
    sink: Sink
    retry: Retry = Field(default_factory=Retry)

    @field_validator("session", mode="before")
    @classmethod
    def _session_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dag(self) -> Pipeline:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique: {', '.join(dupes)} repeated")
        if "sink" in names:
            raise ValueError("'sink' is the name of the writing step: name the stage otherwise")
        for stage in self.stages:
            unknown = [a for a in stage.after if a not in names]
            if unknown:
                raise ValueError(f"stage {stage.name!r}: 'after' names no stage: {', '.join(unknown)}")
        order(self.stages)  # raises on a cycle
        unknown = [s for s in self.sink.from_ if s not in names]
        if unknown:
            raise ValueError(f"sink: 'from' names no stage: {', '.join(unknown)}")
        return self

    def sink_stages(self) -> list[str]:
        """The stages whose rows the sink writes: as named, else those nothing depends on."""
        if self.sink.from_:
            return list(self.sink.from_)
        upstream = {a for s in self.stages for a in s.after}
        return [s.name for s in self.stages if s.name not in upstream]


def order(stages: list[Stage]) -> list[Stage]:
    """Stages upstream first (Kahn's algorithm, file order among equals)."""
    left = {s.name: set(s.after) for s in stages}
    out: list[Stage] = []
    while left:
        ready = [s for s in stages if s.name in left and not left[s.name]]
        if not ready:
            raise ValueError(f"stages form a cycle: {' -> '.join(sorted(left))}")
        for stage in ready:
            del left[stage.name]
            out.append(stage)
            for deps in left.values():
                deps.discard(stage.name)
    return out


def parse(data: Any, origin: str = "pipeline") -> Pipeline:
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
        raise SpecError(f"{origin} is not a valid pipeline:\n" + "\n".join(problems)) from None


def load(path: str | Path) -> Pipeline:
    """Read a pipeline file (YAML or JSON); a relative source path is taken from its folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read pipeline file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a pipeline is a mapping with name, source, stages and sink")
    spec = parse(data, str(path))
    source = spec.source
    if source.kind != "stream" and not Path(source.path).is_absolute():
        source = source.model_copy(update={"path": str(path.parent / source.path)})
    sink = spec.sink
    if sink.url and sink.url.startswith("sqlite:///") and not sink.url.startswith("sqlite:////"):
        sink = sink.model_copy(update={"url": f"sqlite:///{(path.parent / sink.url[10:]).resolve()}"})
    return spec.model_copy(update={"source": source, "sink": sink})
