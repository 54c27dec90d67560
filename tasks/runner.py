"""The one Celery task every GPU worker runs: execute an attempt of a corral task.

Before running, the attempt is claimed against its fence in Redis (corral/base/fence.py): an
attempt that the scheduler has since superseded (node loss, failover, quarantine) does
not run. Workers never talk to etcd.
A worker reports what happened and decides nothing else: after a failure the leader alone
chooses between a local retry (a new attempt it sends to this GPU), a move and giving up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from typing import Any, NamedTuple, NoReturn

import redis
from celery import Celery
from celery.exceptions import Reject

from corral.base import broker, checkpoints, fence
from corral.base.blobs import BlobStore
from corral.base.broker import Write, write_all
from corral.base.config import Settings
from corral.base.errors import error_info
from corral.base.keys import BLOB, JOB_ALGORITHM, RUN_TASK, WARM_TASK
from corral.tasks import claims, registry, starts
from corral.tasks.context import Context, Stop
from corral.tasks.reporter import PATIENCE, Reporter
from corral.tasks.status import publish, status_event

log = logging.getLogger("corral.worker")

SLICE = 0.1  # seconds the heartbeat thread sleeps at most while work runs (tasks/starts.py)

SIMULATED_CUDA_ERROR = (
    "CUDA error: an illegal memory access was encountered "
    "(simulated faulty GPU {node}:{gpu}, cudaErrorIllegalAddress)"
)


class Worker(NamedTuple):
    """What built-in algorithms that talk to corral itself (command jobs) get of the worker."""

    settings: Settings
    redis: Any


class SimulatedGpuFault(RuntimeError):
    """Raised on a simulated GPU listed in --faulty-gpus."""


class Process:
    """Per-process clients, created lazily after the prefork pool has forked."""

    redis: Any = None
    claim: str | None = None  # the SHA of the fence's claim script
    blobs: BlobStore | None = None
    beat: _Heartbeat | None = None
    reporter: Reporter | None = None
    pid: int = 0

    @classmethod
    def ensure(cls, settings: Settings) -> _Heartbeat:
        if cls.pid != os.getpid():
            cls.redis = broker.client(settings.broker, settings.redis_master)
            cls.claim = None  # loaded at the first claim
            cls.blobs = BlobStore(settings, cls.redis)
            cls.beat = _Heartbeat(settings.heartbeat)
            cls.beat.start()
            cls.reporter = Reporter(cls.redis)
            cls.reporter.start()
            cls.pid = os.getpid()
        assert cls.beat is not None
        return cls.beat


class _Heartbeat(threading.Thread):
    """One per worker process: beats for whatever attempt (or warm-up) runs now.

    A thread per attempt would cost more than a trivial task itself (M11 batches run
    hundreds a second), so the process keeps one and points it at the current work.
    With each beat it reads the attempt's fence: an attempt superseded while it runs
    (cancelled, or re-routed after its node was taken for lost) ends its process, which
    Celery replaces; its message comes back and its claim finds it superseded.
    """

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True, name="corral-heartbeat")
        self.every = every
        self._lock = threading.Lock()
        self._make_event: Any = None
        self._fence: str | None = None
        self._due = 0.0
        self._idle = True  # waiting for work with no deadline: only then is it woken
        self._wake = threading.Event()

    def beat_for(self, make_event: Any, fence_key: str | None = None, first: float | None = None) -> None:
        """Beat for this work, first in `first` seconds (else the period); end the process
        when `fence_key` says superseded."""
        with self._lock:
            self._make_event = make_event
            self._due = time.monotonic() + (self.every if first is None else first)
            self._fence = fence_key
            idle = self._idle
        if idle:  # otherwise it reads the new work when its current wait ends (SLICE at most)
            self._wake.set()

    def stop_beating(self) -> None:
        with self._lock:
            self._make_event = None

    def run(self) -> None:
        while True:
            with self._lock:
                make_event, due = self._make_event, self._due
                self._idle = make_event is None
            if make_event is None:
                self._wake.wait()
                self._wake.clear()
                continue
            left = due - time.monotonic()
            if left > 0:  # at most SLICE: work given meanwhile may want an earlier beat
                self._wake.wait(min(left, SLICE))
                self._wake.clear()
                continue
            with self._lock:
                if self._make_event is not make_event:
                    continue  # moved on to other work while we slept
                self._due = time.monotonic() + self.every
                fence_key = self._fence
            try:
                with Process.redis.pipeline(transaction=False) as pipe:
                    beats = make_event("heartbeat")  # one event, or a batch call's list
                    for one in beats if isinstance(beats, list) else (beats,):
                        publish(pipe, one)
                    if fence_key is not None:
                        pipe.get(fence_key)
                    replies = pipe.execute()
            except Exception:  # a missed beat is survivable; the next one retries
                log.exception("heartbeat publish failed")
                continue
            with self._lock:
                current = self._make_event is make_event
            if fence_key is not None and replies[-1] == fence.SUPERSEDED and current:
                log.warning("the running attempt was superseded (cancelled, or run elsewhere): "
                            "ending this worker process")
                with contextlib.suppress(Exception):  # what earlier members of its message report
                    assert Process.reporter is not None
                    Process.reporter.flush()
                os.kill(os.getpid(), signal.SIGKILL)


class _Saved:
    """An attempt's checkpoints (M2): the one it starts from, the ones it saves, requests."""

    def __init__(self, settings: Settings, task_id: str, attempt_id: str, ref: Any, event: Any) -> None:
        self.settings, self.task_id, self.attempt_id, self.event = settings, task_id, attempt_id, event
        self.ref: str | None = ref if isinstance(ref, str) else None
        self.number = 0
        self.since = time.time()  # the last checkpoint, or the start: older requests are met
        self._checked, self._asked, self._stop, self._gone = 0.0, False, None, False

    def load(self) -> Any:
        if self.ref is None:
            return None
        assert Process.blobs is not None
        try:
            return Process.blobs.get(self.ref)
        except (KeyError, ValueError) as exc:
            log.warning("task %s starts over: its checkpoint cannot be read (%s)", self.task_id, exc)
            self.ref = None
            return None

    def save(self, state: Any) -> None:
        encoded = json.dumps(state)  # not JSON: the algorithm's error, raised in its call
        assert Process.reporter is not None
        Process.reporter.flush()  # announced after this attempt's `started`
        self.number += 1
        ref = checkpoints.key(self.settings.cluster, self.attempt_id, self.number)
        with Process.redis.pipeline(transaction=False) as pipe:  # stored before it is announced
            pipe.set(ref, encoded, ex=self.settings.result_ttl)
            publish(pipe, self.event("checkpoint", checkpoint_ref=ref))
            pipe.execute()
        self.ref, self.since, self._asked = ref, time.time(), False

    def _poll(self) -> None:
        """Read what the attempt is asked (a checkpoint, a stop, whether it still counts),
        at most twice a second."""
        now = time.monotonic()
        if now - self._checked >= 0.5:
            self._checked = now
            try:
                self._asked, self._stop, self._gone = checkpoints.signals(
                    Process.redis, self.settings.cluster, self.task_id, self.attempt_id, self.since)
            except redis.RedisError as exc:  # asked again at the next poll
                log.warning("cannot read the requests to attempt %s: %s", self.attempt_id, exc)

    def asked(self) -> bool:
        self._poll()
        return self._asked

    def stop(self) -> float | None:
        self._poll()
        return self._stop

    def gone(self) -> bool:
        self._poll()
        return self._gone


def load_args(args: Any) -> Any:
    """A task's args, read back from the blob store when the leader kept them there."""
    if isinstance(args, dict) and len(args) == 1 and BLOB in args:
        assert Process.blobs is not None
        ref = args[BLOB]
        if not Process.blobs.is_args_key(ref):
            raise ValueError(f"args reference {ref!r} is not one the scheduler made")
        return Process.blobs.get(ref)
    return args


def claim(cluster: str, msgs: list[dict[str, Any]], started: list[dict[str, Any]]) -> list[fence.Verdict]:
    """Claim attempts and report them `started`, in one round trip (the leader ignores
    `started` when the claim finds an attempt superseded, and hears `failed` next when it
    finds it lost); the claim script is loaded again if Redis lost it."""
    for _ in range(2):
        try:
            if Process.claim is None:
                Process.claim = fence.claimer(Process.redis)
            with Process.redis.pipeline(transaction=False) as pipe:
                mine = fence.claim_in(pipe, Process.claim, cluster, msgs)
                for event in started:
                    publish(pipe, event)
                before = pipe.execute()[0]
            return [fence.verdict(b, digest) for b, digest in zip(before, mine, strict=True)]
        except redis.exceptions.NoScriptError:
            Process.claim = None
    raise redis.RedisError("the claim script could not be loaded")


def skipped(settings: Settings, seen: fence.Verdict, msg: dict[str, Any], event: Any) -> bool:
    """What a claim that is not `run` means (logged, counted or reported); True then."""
    task_id, attempt_id = msg["task_id"], msg["attempt_id"]
    if seen == "superseded":
        log.info("attempt %s of task %s is superseded; not running it", attempt_id, task_id)
    elif seen == "duplicate":
        log.info("attempt %s of task %s came twice (a repeated publish); running it once", attempt_id,
                 task_id)
    elif seen == "forged":
        log.warning("attempt %s of task %s was not issued by a leader (or was changed on the way); "
                    "refused", attempt_id, task_id)
        with contextlib.suppress(redis.RedisError):
            Process.redis.incr(fence.refused_key(settings.cluster))
    elif seen == "lost":
        publish(Process.redis, event("failed", error={
            "type": "WorkerLost",
            "message": "the worker process running this attempt died (killed or out of memory)"}))
    return seen != "run"


def requeue(exc: Exception, what: str) -> NoReturn:
    log.warning("cannot claim %s (%s); requeueing", what, exc)
    time.sleep(0.5)
    raise Reject(f"Redis unreachable: {exc}", requeue=True) from exc


Event = Any  # makes one attempt's status event: event(kind, **extra)


def where(msg: dict[str, Any]) -> tuple[str, int]:
    """This worker's node and GPU (the message's, outside a node agent)."""
    return (os.environ.get("CORRAL_NODE", msg.get("node", "")),
            int(os.environ.get("CORRAL_GPU_INDEX", msg.get("gpu", -1))))


def run_message(app: Celery, members: list[dict[str, Any]], claimed: Any = None) -> None:
    """Run a message's attempts in order, each with its own fence and outcome.

    All of them were claimed as the main process took the message (`claimed`, tasks/claims.py)
    or are claimed here in one round trip, with the first call's `started` (none for a quick
    algorithm: tasks/starts.py); after that no member waits for Redis before it runs: each
    outcome, and the next member's `started`, go to the process's reporter, and the message returns
    (and is acknowledged) only once they are written. A member superseded after the claim
    still runs; the scheduler ignores its late outcome, as it ignores any other."""
    from corral.tasks import batching  # it builds on this module's claim and report helpers

    settings: Settings = app.corral_settings  # type: ignore[attr-defined]
    Process.ensure(settings)
    assert Process.reporter is not None
    reporter = Process.reporter
    node, gpu = where(members[0])

    def event_of(msg: dict[str, Any]) -> Event:
        task_id, attempt_id = msg["task_id"], msg["attempt_id"]
        return lambda kind, **extra: status_event(kind, task_id, attempt_id, node, gpu, **extra)

    calls = list(batching.calls(members))
    # By member, not attempt id: a message that names one attempt twice runs it once.
    events = {id(m): event_of(m) for m in members}
    quiet = {id(m) for m in members if starts.quiet(m.get("algorithm"))}  # tasks/starts.py
    opened = time.time()  # when the first call began, as its `started` would have said
    first = [events[id(m)]("started", pid=os.getpid()) for m in calls[0][0] if id(m) not in quiet]
    seen = claims.given(claimed, members)  # claimed as the main process took the message
    if seen is None:
        try:
            seen = claim(settings.cluster, members, first)
        except redis.RedisError as exc:
            requeue(exc, f"{len(members)} attempts" if len(members) > 1 else
                    f"attempt {members[0]['attempt_id']} of {members[0]['task_id']}")
    elif first:
        reporter.started(first)
    verdicts = {id(m): v for m, v in zip(members, seen, strict=True)}
    for i, (group, algo) in enumerate(calls):
        mine = [(m, events[id(m)]) for m in group if not skipped(settings, verdicts[id(m)], m, events[id(m)])]
        if not mine:
            continue
        began = opened if i == 0 else time.time()
        if i > 0 and (loud := [e("started", pid=os.getpid()) for m, e in mine if id(m) not in quiet]):
            reporter.started(loud)
        mine = [(m, starts.Quiet(e, began) if id(m) in quiet else e) for m, e in mine]
        last = i == len(calls) - 1
        clock = time.monotonic()
        if algo is None:
            execute(settings, *mine[0], began=began, last=last)
        else:  # a batch-capable algorithm: one call for the group (M11)
            batching.execute_many(settings, mine, algo, began=began, last=last)
        starts.ran(mine[0][0].get("algorithm"), time.monotonic() - clock)
    reporter.flush()


def execute(settings: Settings, msg: dict[str, Any], event: Event, began: float, last: bool = True) -> None:
    """Run one claimed attempt and report its outcome (`began`: when, by this host's clock)."""
    assert Process.beat is not None and Process.reporter is not None
    beat, reporter = Process.beat, Process.reporter
    task_id, attempt_id = msg["task_id"], msg["attempt_id"]
    node, gpu = where(msg)

    # A job watches its own fence (it kills its process group first); any other attempt's
    # process ends when its fence says superseded.
    own = None if msg["algorithm"] == JOB_ALGORITHM else fence.key(settings.cluster, attempt_id)
    beat.beat_for(event, own, starts.first_beat(event))
    saved = _Saved(settings, task_id, attempt_id, msg.get("checkpoint"), event)
    clock = time.monotonic()
    try:
        if os.environ.get("CORRAL_FAULTY") == "1":
            raise SimulatedGpuFault(SIMULATED_CUDA_ERROR.format(node=node, gpu=gpu))
        algo = registry.get(msg["algorithm"])
        assert Process.blobs is not None
        inputs = {name: Process.blobs.get(Process.blobs.result_key(up, won))
                  for name, (up, won) in (msg.get("inputs") or {}).items()}
        ctx = Context(
            task_id=task_id, attempt_id=attempt_id, node=node, gpu=gpu,
            session=msg.get("session", ""), number=int(msg.get("number", 1)), state=algo.warm(),
            checkpoint=saved.load(), inputs=inputs,
            gpus=[int(g) for g in msg.get("gpus") or [gpu]], worker=Worker(settings, Process.redis),
            _progress=lambda info: reporter.send(lambda pipe: publish(pipe, event("progress", info=info))),
            _save=saved.save, _asked=saved.asked, _stop=saved.stop, _gone=saved.gone,
        )
        value = algo.fn(load_args(msg.get("args")), ctx) if algo.batch == 1 else \
            alone(algo, load_args(msg.get("args")), ctx)
        encoded = json.dumps(value)  # a result that is not JSON fails the attempt here
    except Stop as stop:  # asked to move, or a job's checkpoint exit: it runs again
        beat.stop_beating()
        why = str(stop)[:200]
        log.info("attempt %s of task %s yielded: %s", attempt_id, task_id, why)
        yielded = event("yielded", reason=why, began=began)
        report(lambda pipe: publish(pipe, yielded), last, attempt_id)
        return
    except Exception as exc:
        beat.stop_beating()
        log.warning("attempt %s of task %s failed: %s", attempt_id, task_id, exc)
        failed = event("failed", error=error_info(exc), began=began)
        report(lambda pipe: publish(pipe, failed), last, attempt_id)
        return
    beat.stop_beating()
    assert Process.blobs is not None
    blobs = Process.blobs
    # Stamped now: the write may go out later, with the next member's.
    done = event("succeeded", ran=time.monotonic() - clock, began=began)

    def succeeded(pipe: Any) -> None:  # result and outcome: one round trip
        done["result_ref"] = blobs.put_result(task_id, attempt_id, encoded, pipe)
        publish(pipe, done)

    report(succeeded, last, attempt_id)


def alone(algo: registry.Algorithm, args: Any, ctx: Context) -> Any:
    """A batch-capable algorithm called with one input (a call of one)."""
    values = algo.fn([args], ctx)
    if not isinstance(values, list) or len(values) != 1:
        raise TypeError(f"batch algorithm {algo.name} returned {type(values).__name__} for one input")
    return values[0]


def report(write: Write, last: bool, *attempt_ids: str) -> None:
    """The outcome of these attempts: behind the work when another member of the message
    follows, else at once (after what is queued), so that a lone task pays one round trip
    as it always did."""
    assert Process.reporter is not None
    if not last:
        Process.reporter.send(write, frozenset(attempt_ids))
        return
    Process.reporter.flush()
    write_all(Process.redis, [write], time.monotonic() + PATIENCE)


def warm_up(app: Celery, msg: dict[str, Any]) -> None:
    """Run the session's algorithms' setup() in this worker process before its first task."""
    settings: Settings = app.corral_settings  # type: ignore[attr-defined]
    beat = Process.ensure(settings)
    node, gpu = where(msg)
    # Model loading can take minutes: the scheduler must know the worker lives.
    beat.beat_for(lambda kind: {"kind": kind, "node": node, "gpu": gpu, "time": time.time()})
    ready = []
    try:
        for name in msg.get("algorithms", []):
            try:
                registry.get(name).warm()
                ready.append(name)
            except Exception:
                log.exception("warm-up of %s failed", name)
    finally:
        beat.stop_beating()
    publish(Process.redis, {
        "kind": "warmed", "node": node, "gpu": gpu,
        "session": msg.get("session"), "algorithms": ready, "generation": msg.get("generation"),
        "time": time.time(),
    })


def register(app: Celery) -> None:
    @app.task(name=RUN_TASK, bind=True, acks_late=True, ignore_result=True)
    def run(self: Any, **msg: Any) -> None:
        # A batch (M11) holds several attempts: run in order, each with its own fence and outcome.
        members = claims.members(msg)
        if len(members) < (len(msg["batch"]) if isinstance(msg.get("batch"), list) else 1):
            log.warning("a run message without a task and attempt id was refused")  # no leader's
        if members:  # with the verdicts of this worker's main process, when it made them
            run_message(app, members, getattr(self.request, claims.HEADER, None))

    @app.task(name=WARM_TASK, acks_late=True, ignore_result=True)
    def warm(**msg: Any) -> None:
        warm_up(app, msg)
