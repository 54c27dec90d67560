"""Sinks: stage rows into a SQL database (SQLAlchemy) or a NoSQL store (Redis).

A sink write replaces the rows of one (run, item) in one transaction, so a retried or
duplicated sink task leaves exactly one copy of them: rows are exactly-once even though
the attempts that write them are at-least-once.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from corral.pipelines.spec import Sink

Rows = list[tuple[str, int, dict[str, Any]]]  # (stage, row number, row)

_ENGINES: dict[str, Any] = {}
_TABLES: dict[tuple[Any, ...], Any] = {}  # (url, table, columns) -> the table, created once per process
_LOCK = threading.Lock()


def rows_of(stage: str, result: Any) -> list[dict[str, Any]]:
    """A stage's rows: its result's `rows` (a list of objects), or the result as one row."""
    rows = result.get("rows") if isinstance(result, dict) else None
    if rows is None:
        return [result if isinstance(result, dict) else {"value": result}]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"stage {stage!r}: 'rows' must be a list of objects")
    return rows


def url_of(sink: Sink, default: str | None = None) -> str:
    if sink.url_env:
        url = os.environ.get(sink.url_env)
        if not url:
            raise RuntimeError(f"sink: environment variable {sink.url_env} is not set on this worker")
        return url
    if sink.url:
        return sink.url
    if default:
        return default
    raise RuntimeError("sink: no url")


def write(sink: Sink, run: str, item: int, results: dict[str, Any], broker: str | None = None) -> int:
    """Write the rows of one item, replacing any earlier copy; returns how many."""
    rows = [(stage, i, row) for stage, result in results.items()
            for i, row in enumerate(rows_of(stage, result))]
    if sink.kind == "sql":
        _write_sql(sink, url_of(sink), run, item, rows)
    else:
        _write_redis(sink, url_of(sink, broker), run, item, rows)
    return len(rows)


def _engine(url: str) -> Any:
    import sqlalchemy

    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = sqlalchemy.create_engine(url, pool_pre_ping=True)
        return engine


def table(sink: Sink, metadata: Any) -> Any:
    """The sink's table: (run, item, stage, row) as key, typed columns, the whole row as JSON."""
    import sqlalchemy as sa

    types = {"integer": sa.BigInteger, "float": sa.Float, "text": sa.Text, "boolean": sa.Boolean,
             "json": sa.JSON}
    return sa.Table(
        sink.table, metadata,
        sa.Column("run", sa.String(200), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True),
        sa.Column("stage", sa.String(40), primary_key=True),
        sa.Column("row", sa.Integer, primary_key=True),
        *(sa.Column(name, types[kind]()) for name, kind in sink.columns.items()),
        sa.Column("data", sa.JSON),
    )


def _write_sql(sink: Sink, url: str, run: str, item: int, rows: Rows) -> None:
    import sqlalchemy as sa

    engine = _engine(url)
    cached = (url, sink.table, tuple(sink.columns.items()))
    t = _TABLES.get(cached)
    if t is None:
        metadata = sa.MetaData()
        t = table(sink, metadata)
        try:
            metadata.create_all(engine, checkfirst=True)
        except sa.exc.DBAPIError:
            # Another worker made it between our check and our CREATE (two items' sinks at
            # once on different GPUs; SQLite says OperationalError, PostgreSQL a unique
            # violation): then it is there; anything else is a real error.
            if not sa.inspect(engine).has_table(sink.table):
                raise
        _TABLES[cached] = t
    values = [{"run": run, "item": item, "stage": stage, "row": i, "data": row,
               **{c: row.get(c) for c in sink.columns}} for stage, i, row in rows]
    with engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.run == run, t.c.item == item))
        if values:
            conn.execute(sa.insert(t), values)


def _write_redis(sink: Sink, url: str, run: str, item: int, rows: Rows) -> None:
    """One hash per run, `<table>:<run>`, field `<item>:<stage>:<row>` -> the row as JSON."""
    from corral.base import broker
    from corral.base.config import Settings

    key = f"{sink.table}:{run}"
    client = broker.client(url, Settings.from_env().redis_master)
    try:
        old = [f for f in client.hkeys(key) if f.decode().startswith(f"{item}:")]
        with client.pipeline(transaction=True) as pipe:
            if old:
                pipe.hdel(key, *old)
            if rows:
                pipe.hset(key, mapping={f"{item}:{stage}:{i}": json.dumps(row) for stage, i, row in rows})
            pipe.execute()
    finally:
        client.close()
