"""The history store: where a finished task's record lives once it has left etcd.

etcd holds what is live (docs/architecture.md, History); a task that has ended moves here,
keyed by its id, for `CORRAL_TASK_RETENTION`. Two homes, chosen by `CORRAL_HISTORY`:

- empty (the default): Redis, next to the results, one key per task with the retention as
  its TTL, the record's JSON compressed (about 400 bytes a task). No setup, and it expires
  by itself; its size is bounded by the task rate times the retention.
- an SQLAlchemy URL (`postgresql+psycopg://...`, `sqlite:///...`): one row per task in
  `corral_history`, for fleets that keep history past one machine's memory and query it.
  The leader deletes rows older than the retention.

Writes are idempotent puts of the same record (a leader killed mid-move makes the next one
put it again), so a record is never doubled, and readers look in etcd first, then here.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterable
from typing import Any, Protocol

import redis

from corral.base import broker
from corral.base.config import Settings


class HistoryError(RuntimeError):
    """The history store could not be read or written; the message says which and why."""


class HistoryStore(Protocol):
    def put_many(self, records: Iterable[dict[str, Any]]) -> None: ...

    def get_many(self, task_ids: list[str]) -> list[dict[str, Any] | None]: ...

    def expire(self, before: float) -> int: ...

    def close(self) -> None: ...


def pack(record: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(record, separators=(",", ":")).encode(), 1)


def unpack(raw: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(raw))


def ended(record: dict[str, Any]) -> float:
    """When a finished task ended: its last event's time (its submission if it has none)."""
    events = record.get("events") or ()
    return float(events[-1]["time"] if events else record.get("submitted") or 0.0)


class RedisHistory:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._prefix = f"corral:{settings.cluster}:history:"
        self._ttl = max(1, int(settings.task_retention))
        self._redis = client or broker.client(settings.broker, settings.redis_master)
        self._own = client is None

    def key(self, task_id: str) -> str:
        return self._prefix + task_id

    def put_many(self, records: Iterable[dict[str, Any]]) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for record in records:
                    pipe.set(self.key(record["id"]), pack(record), ex=self._ttl)
                pipe.execute()
        except redis.RedisError as exc:
            raise HistoryError(f"history store (Redis) refused the write: {exc}") from exc

    def get_many(self, task_ids: list[str]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        try:
            for i in range(0, len(task_ids), 1000):
                raws = self._redis.mget([self.key(t) for t in task_ids[i:i + 1000]])
                out.extend(None if raw is None else unpack(raw) for raw in raws)
        except redis.RedisError as exc:
            raise HistoryError(f"history store (Redis) could not be read: {exc}") from exc
        return out

    def expire(self, before: float) -> int:
        return 0  # each key carries the retention as its TTL

    def close(self) -> None:
        if self._own:
            self._redis.close()


class SqlHistory:
    """One row per finished task; the record as JSON text, with its state and end time
    as columns an operator can query."""

    def __init__(self, settings: Settings) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self._cluster = settings.cluster
        try:
            self._engine = sa.create_engine(settings.history, pool_pre_ping=True)
        except Exception as exc:  # a bad URL or a missing driver
            raise HistoryError(f"CORRAL_HISTORY={settings.history!r} is not usable: {exc}") from exc
        meta = sa.MetaData()
        self._table = sa.Table(
            "corral_history", meta,
            sa.Column("cluster", sa.String(128), primary_key=True),
            sa.Column("task_id", sa.String(256), primary_key=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("ended", sa.Float, nullable=False, index=True),
            sa.Column("record", sa.Text, nullable=False),
        )
        self._meta = meta
        self._ready = False
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._meta.create_all(self._engine, checkfirst=True)
                    self._ready = True

    def put_many(self, records: Iterable[dict[str, Any]]) -> None:
        rows = [{"cluster": self._cluster, "task_id": r["id"], "state": r.get("state", ""),
                 "ended": ended(r), "record": json.dumps(r, separators=(",", ":"))} for r in records]
        if not rows:
            return
        t = self._table
        try:
            self._prepare()
            with self._engine.begin() as conn:
                # Delete, then insert, in one transaction: the same on every database, and
                # a put of the same record twice leaves one row.
                conn.execute(t.delete().where(t.c.cluster == self._cluster,
                                              t.c.task_id.in_([r["task_id"] for r in rows])))
                conn.execute(t.insert(), rows)
        except self._sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store (SQL) refused the write: {_short(exc)}") from exc

    def get_many(self, task_ids: list[str]) -> list[dict[str, Any] | None]:
        t = self._table
        found: dict[str, dict[str, Any]] = {}
        try:
            self._prepare()
            with self._engine.connect() as conn:
                for i in range(0, len(task_ids), 500):
                    part = task_ids[i:i + 500]
                    for task_id, record in conn.execute(
                            self._sa.select(t.c.task_id, t.c.record).where(
                                t.c.cluster == self._cluster, t.c.task_id.in_(part))):
                        found[task_id] = json.loads(record)
        except self._sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store (SQL) could not be read: {_short(exc)}") from exc
        return [found.get(t_id) for t_id in task_ids]

    def expire(self, before: float) -> int:
        t = self._table
        try:
            self._prepare()
            with self._engine.begin() as conn:
                return conn.execute(t.delete().where(t.c.cluster == self._cluster,
                                                     t.c.ended < before)).rowcount or 0
        except self._sa.exc.SQLAlchemyError as exc:
            raise HistoryError(f"history store (SQL) could not expire rows: {_short(exc)}") from exc

    def close(self) -> None:
        self._engine.dispose()


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_history(settings: Settings, redis_client: redis.Redis | None = None) -> HistoryStore:
    """The history store the settings name (Redis when CORRAL_HISTORY is empty)."""
    if settings.history:
        return SqlHistory(settings)
    return RedisHistory(settings, redis_client)

