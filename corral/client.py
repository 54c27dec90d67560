"""The Python client (docs/contracts.md): submit through the ingress queue, read state from etcd."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from etcd3 import exceptions as etcd_errors

from corral import waiting
from corral.base import broker, wire
from corral.base.blobs import BlobStore
from corral.base.config import Settings
from corral.base.etcd import connect as etcd_connect
from corral.base.etcd import get_json, prefix_json
from corral.base.history import HistoryError, HistoryStore, open_history
from corral.base.keys import INGRESS_QUEUE, SESSION_TASK, SUBMIT_TASK, Keys
from corral.base.retry import RetryPolicy as Retry
from corral.control import Control

MAP_BATCH = 200  # tasks per ingress message from map()
MAP_BATCH_BYTES = 1 << 20  # and at most about this much JSON
FIRST_LOOK = 0.01  # seconds a task this client just submitted runs before Handle.result() reads it
ADMISSION_EVERY = 0.5  # seconds a client trusts its last reading of the cluster's admission
PUBLISH_PATIENCE = 10.0  # seconds a submission waits through a broker restart or failover
HISTORY_PATIENCE = 60.0  # seconds a read of the history store is retried (a Redis failover takes ~6)


class TaskFailed(Exception):
    """A task ended FAILED, CANCELLED or REJECTED; `.record` and `.attempts` say why."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.attempts = record.get("attempts", [])
        error = record.get("error") or {}
        why = record.get("reason") or f"{error.get('type', '')}: {error.get('message', '')}"
        super().__init__(f"task {record.get('id')} {record.get('state')}: {why}")


class ResultLost(LookupError):
    """A task SUCCEEDED but its result is no longer in the result store: it expired
    (CORRAL_RESULT_TTL), or the broker lost it (a Redis restart without persistence)."""

    def __init__(self, record: dict[str, Any], detail: str) -> None:
        self.record = record
        super().__init__(f"task {record.get('id')} SUCCEEDED but its result is lost: {detail}; "
                         "it expired, or Redis lost it (run Redis with persistence: docs/operations.md)")


class Backpressure(RuntimeError):
    """The cluster refuses new work for now (too many unfinished tasks, or etcd near its
    quota); the message says which. Work already submitted keeps running: submit later."""


class SessionConflict(ValueError):
    """A session is open with other settings; open it with update=True to change them."""


class Client(Control):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.cluster)
        self.id = f"client-{uuid.uuid4().hex[:16]}"  # owner of the sessions it opens
        self.etcd = etcd_connect(settings, probe=True)
        self._blobs: BlobStore | None = None
        self._history: HistoryStore | None = None
        self._admission: tuple[float, dict[str, Any]] = (0.0, {})

    # ------------------------------------------------------------ submit

    def admission(self) -> dict[str, Any]:
        """Whether the cluster takes new work: the leader's word, read at most every half
        second: {"open", "reason", "live", "max_live", "etcd_bytes", "etcd_high_water"}."""
        read_at, state = self._admission
        if time.monotonic() - read_at > ADMISSION_EVERY:
            summary = self._read(lambda: get_json(self.etcd, self.keys.summary)) or {}
            state = summary.get("admission") or {"open": True}
            self._admission = (time.monotonic(), state)
        return state

    def _check_admission(self) -> None:
        state = self.admission()
        if state.get("open") is False:
            raise Backpressure(f"the cluster refuses new work for now: {state.get('reason')}")

    def submit(
        self,
        algorithm: str,
        args: Any = None,
        *,
        session: str = "default",
        task_id: str | None = None,
        retry: Retry | None = None,
        gpus: int = 1,
        after: Mapping[str, Handle | str] | Iterable[Handle | str] | None = None,
    ) -> Handle:
        """`after`: upstream tasks (handles or ids) this one waits for; their results reach
        the algorithm as `ctx.inputs`, by input name (a mapping) or by task id (a list)."""
        self._check_admission()
        kwargs = _submit_kwargs(algorithm, args, session, task_id or uuid.uuid4().hex, gpus,
                                (retry or Retry()).to_dict(), fresh=task_id is None)
        if after is not None:
            kwargs["after"] = _upstream(after)
        self._publish([(SUBMIT_TASK, kwargs["task_id"], kwargs, f"task {kwargs['task_id']}")])
        return Handle(self, kwargs["task_id"], time.monotonic())

    def map(self, algorithm: str, args_list: Iterable[Any], *, session: str = "default",
            retry: Retry | None = None, gpus: int = 1) -> list[Handle]:
        """Submit one task per element of `args_list`, many to an ingress message (M11).

        Each task is still its own record with its own outcome; batching only saves a
        message and a round trip per task on the way in.
        """
        policy = (retry or Retry()).to_dict()
        items = [_submit_kwargs(algorithm, args, session, uuid.uuid4().hex, gpus, policy, fresh=True)
                 for args in args_list]
        return self.send(items)

    def send(self, items: Iterable[dict[str, Any]]) -> list[Handle]:
        """Submit prepared ingress kwargs (docs/contracts.md, each with its task_id), many to a
        message, in order: an upstream task sent before its dependents is known to them."""
        self._check_admission()
        handles: list[Handle] = []
        batch: list[dict[str, Any]] = []
        size = 0

        def flush() -> None:
            nonlocal batch, size
            if batch:
                self._publish([(SUBMIT_TASK, uuid.uuid4().hex, {"tasks": batch}, f"{len(batch)} tasks")])
            batch, size = [], 0

        for item in items:
            weight = len(json.dumps(item.get("args"), separators=(",", ":"))) + 200
            if batch and (len(batch) >= MAP_BATCH or size + weight > MAP_BATCH_BYTES):
                flush()
            batch.append(item)
            size += weight
            handles.append(Handle(self, item["task_id"], time.monotonic()))
        flush()
        return handles

    def _publish(self, messages: list[tuple[str, str, dict[str, Any], str]]) -> None:
        """Ingress messages, (task name, message id, kwargs, what Flower shows of them), in
        one round trip: Celery protocol-2 messages on `corral.ingress` (docs/contracts.md),
        written without Celery's send path, which took more time than the rest of a lone
        submission. A broker restart or failover of a few seconds delays them, not fails them
        (sent twice after a lost reply, a submission is known by its task id)."""
        encoded = [wire.encode_task(INGRESS_QUEUE, name, mid, kwargs, 0, origin=self.id, kwargsrepr=shown)
                   for name, mid, kwargs, shown in messages]
        broker.write_all(self._blob_store().redis,
                         [lambda pipe, key=key, payload=payload: pipe.lpush(key, payload)
                          for key, payload in encoded], time.monotonic() + PUBLISH_PATIENCE)

    @contextmanager
    def session(
        self,
        name: str,
        fixed_workers: int = 0,
        share_ratio: float = 1.0,
        max_workers: int | None = None,
        priority: int = 0,
        algorithms: Iterable[str] = (),
        close: bool = True,
        update: bool = False,
    ) -> Iterator[Session]:
        """Open a session (or join it, when it is open with the same settings) for the block;
        leaving it closes the session only if this client opened it."""
        session = self.open_session(name, fixed_workers, share_ratio, max_workers, priority,
                                    algorithms, update=update)
        try:
            yield session
        finally:
            if close:
                self.close_session(name)

    def open_session(
        self,
        name: str,
        fixed_workers: int = 0,
        share_ratio: float = 1.0,
        max_workers: int | None = None,
        priority: int = 0,
        algorithms: Iterable[str] = (),
        update: bool = False,
    ) -> Session:
        """Open a session, or join it when it is open with the same settings; its fixed
        workers are planned and warmed at once. A session open with other settings raises
        SessionConflict unless `update` asks to change them."""
        wanted = {"fixed_workers": fixed_workers, "share_ratio": share_ratio, "max_workers": max_workers,
                  "priority": priority, "algorithms": list(algorithms)}
        current = get_json(self.etcd, self.keys.session(name))
        if (not update and isinstance(current, dict) and current.get("state") == "open"
                and not current.get("auto")):
            differs = {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}
            if differs:
                raise SessionConflict(
                    f"session {name!r} is open with other settings "
                    f"({', '.join(f'{k}={v!r}' for k, v in differs.items())}); "
                    "pass update=True to change them")
        self._session_message(name, "open", update=update, owner=self.id, **wanted)
        return Session(self, name)

    def close_session(self, name: str, force: bool = False) -> None:
        """Release a session's fixed workers (its remaining tasks still run on shared GPUs):
        if this client opened it, or with `force`, whoever did."""
        self._session_message(name, "close", owner=self.id, force=force)

    def session_record(self, name: str) -> dict[str, Any] | None:
        """A session as the leader keeps it: settings, state, owner, and a note when its
        fixed workers were capped."""
        return get_json(self.etcd, self.keys.session(name))

    def plan(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The resource plan: (node, gpu) -> {"session", "generation", "warm", ...}."""
        out = {}
        for key, value in prefix_json(self.etcd, self.keys.plan()).items():
            node, _, index = key.rpartition("/")
            out[(node, int(index))] = value
        return out

    def _session_message(self, name: str, action: str, **fields: Any) -> None:
        self._publish([(SESSION_TASK, uuid.uuid4().hex, {"name": name, "action": action, **fields},
                        f"session {name} {action}")])

    # -------------------------------------------------------------- read

    def task(self, task_id: str) -> dict[str, Any] | None:
        """A task's record: from etcd while it is live, from the history store once it has
        moved there (etcd is read first: a record is put in history before it leaves etcd)."""
        record = self._read(lambda: get_json(self.etcd, self.keys.task(task_id)))
        return record if record is not None else self.finished([task_id])[0]

    def finished(self, task_ids: list[str],
                 patience: float = HISTORY_PATIENCE) -> list[dict[str, Any] | None]:
        """Records of tasks in the history store, in one round trip (None where absent). A
        store that does not answer (Redis failing over, say) is asked again for `patience`
        seconds before its HistoryError is raised."""
        if self._history is None:
            self._history = open_history(self.settings, self._blob_store().redis)
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._history.get_many(task_ids)
            except HistoryError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def _blob_store(self) -> BlobStore:
        if self._blobs is None:
            self._blobs = BlobStore(self.settings)
        return self._blobs

    def result(self, record: dict[str, Any]) -> Any:
        if record.get("state") != "SUCCEEDED":
            raise TaskFailed(record)
        try:
            return self._blob_store().get(record["result_ref"])
        except KeyError as exc:
            raise ResultLost(record, str(exc)) from None

    def wait(self, handles: Iterable[Handle], timeout: float | None = None,
             progress: Any = None) -> dict[str, dict[str, Any]]:
        """Wait until every handle is terminal; returns id -> record. A read, then a watch,
        no polling (corral/waiting.py); `progress(n)` hears how many have finished."""
        ids = {h.id for h in handles}
        return self._read(lambda: waiting.wait_for(self.etcd, self.keys.task(), set(ids), self.finished,
                                                   timeout, progress))

    def results(self, handles: Iterable[Handle], timeout: float | None = None) -> list[Any]:
        """Every handle's result, in order, the results read in one round trip once all
        have finished (as `ray.get` takes a list). Raises TaskFailed for the first task
        that did not succeed, ResultLost for one whose result is gone."""
        handles = list(handles)
        records = self.wait(handles, timeout=timeout)
        ordered = [records[h.id] for h in handles]
        for record in ordered:
            if record.get("state") != "SUCCEEDED":
                raise TaskFailed(record)
        values = self._blob_store().get_many([r["result_ref"] for r in ordered])
        out = []
        for record, value in zip(ordered, values, strict=True):
            if isinstance(value, KeyError):
                raise ResultLost(record, str(value))
            out.append(value)
        return out

    def status(self) -> dict[str, Any]:
        from corral.base.status import cluster_status

        return self._read(lambda: cluster_status(self.etcd, self.keys))

    def _read(self, read: Any) -> Any:
        """A read that a dead etcd member does not fail: the client marks the member it used
        as failed and the next try goes to another (one per endpoint at most)."""
        for _ in range(len(self.settings.etcd_endpoints) - 1):
            try:
                return read()
            except etcd_errors.ConnectionFailedError:
                continue
        return read()

    def close(self) -> None:
        self.etcd.close()
        if self._history is not None:
            self._history.close()
        if self._blobs is not None:
            self._blobs.close()


@dataclass
class Session:
    client: Client
    name: str

    def submit(self, algorithm: str, args: Any = None, **options: Any) -> Handle:
        return self.client.submit(algorithm, args, session=self.name, **options)

    def map(self, algorithm: str, args_list: Iterable[Any], **options: Any) -> list[Handle]:
        return self.client.map(algorithm, args_list, session=self.name, **options)


@dataclass
class Handle:
    client: Client
    id: str
    sent: float = 0.0  # when this client submitted it (time.monotonic()); 0: not known

    def record(self) -> dict[str, Any] | None:
        return self.client.task(self.id)

    def state(self) -> str:
        record = self.record()
        return record["state"] if record else "PENDING"

    def result(self, timeout: float | None = None) -> Any:
        """The task's result once it has one: its record is read, then waited for by a
        watch (Client.wait), so the result comes as soon as the record says so, however
        long the task runs. A task this client submitted less than FIRST_LOOK seconds ago
        is left that long first: it has rarely finished by then, and the read and the
        watch would compete with its dispatch for the CPU of this host and of etcd.
        Raises TaskFailed, ResultLost or TimeoutError."""
        began = time.monotonic()
        early = FIRST_LOOK - (began - self.sent) if self.sent else 0.0
        if early > 0:
            time.sleep(early if timeout is None else min(early, timeout))
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        return self.client.result(self.client.wait([self], timeout=left)[self.id])


def _submit_kwargs(algorithm: str, args: Any, session: str, task_id: str, gpus: int,
                   retry: dict[str, Any], fresh: bool = False) -> dict[str, Any]:
    """The kwargs of one submission (docs/contracts.md), alone or as an element of a batch;
    `fresh` when the client made the id up for it (the leader then skips a lookup)."""
    out = {"algorithm": algorithm, "args": args, "session": session, "task_id": task_id,
           "gpus": gpus, "retry": retry}
    if fresh:
        out["fresh"] = True
    return out


def _upstream(after: Mapping[str, Handle | str] | Iterable[Handle | str]) -> dict[str, str] | list[str]:
    def task_id(x: Handle | str) -> str:
        return x.id if isinstance(x, Handle) else str(x)

    if isinstance(after, Mapping):
        return {str(name): task_id(x) for name, x in after.items()}
    return [task_id(x) for x in after]


def connect(
    etcd: str | None = None, broker: str | None = None, cluster: str | None = None
) -> Client:
    """A client of the cluster named by the arguments or the environment. Raises
    `EtcdUnavailable`, naming the address and the cause, when etcd does not answer."""
    return Client(Settings.from_env(etcd=etcd, broker=broker, cluster=cluster))
