"""A finished task's move from etcd to the history store, as the core decides it: which
records move together, what a new leader moves again, and what expires."""

from __future__ import annotations

from corral.scheduler.core import Core
from corral.scheduler.core.lifecycle import CHUNK
from corral.scheduler.records import pack_done, read_retired, unpack_done

from .harness import ONE_NODE, make, policy, report, submit


def finished(core: Core, *ids: str) -> None:
    for tid in ids:
        submit(core, tid)
    core.route(1.5)
    for tid in ids:
        report(core, tid, "started")
        report(core, tid, "succeeded", result_ref=f"r-{tid}")
    core.tick(10.0)  # past RETIRE_AFTER: retired, and queued for the history store
    core.take_effects()


def test_a_retired_task_waits_to_move_with_its_whole_record() -> None:
    core = make(ONE_NODE)
    finished(core, "t")
    batch = core.archive_batch(11.0)
    assert batch is not None
    (record,) = batch.records
    assert record["id"] == "t" and record["state"] == "SUCCEEDED" and record["result_ref"] == "r-t"
    assert unpack_done(batch.chunk) == {"t": core.retired["t"]}


def test_a_move_that_is_not_confirmed_is_offered_again() -> None:
    core = make(ONE_NODE)
    finished(core, "t")
    first = core.archive_batch(11.0)
    again = core.archive_batch(12.0)
    assert first is not None and again is not None
    assert [r["id"] for r in again.records] == ["t"] and again.name != first.name


def test_a_confirmed_move_leaves_the_id_known_and_nothing_to_move() -> None:
    core = make(ONE_NODE)
    finished(core, "t")
    batch = core.archive_batch(11.0)
    assert batch is not None
    core.archived(batch)
    assert core.archive_batch(12.0) is None
    assert core.known("t") and batch.name in core.chunks


def test_one_move_holds_at_most_what_fits_one_etcd_transaction() -> None:
    core = make(ONE_NODE, depth=1000)
    finished(core, *[f"t{i}" for i in range(CHUNK + 5)])
    batch = core.archive_batch(11.0)
    assert batch is not None and len(batch.records) == CHUNK  # with the chunk: 100 operations
    core.archived(batch)
    rest = core.archive_batch(11.0)
    assert rest is not None and len(rest.records) == 5


def test_a_new_leader_moves_again_what_is_still_in_etcd_and_knows_what_moved() -> None:
    core = make(ONE_NODE)
    finished(core, "moved", "stayed")
    batch = core.archive_batch(11.0)
    assert batch is not None
    # The last leader moved "moved" (its chunk is in etcd, its record is not) and died
    # before "stayed" moved (its record is still in etcd).
    moved = [r for r in batch.records if r["id"] == "moved"]
    stayed = [r for r in batch.records if r["id"] == "stayed"]
    chunk = pack_done({"moved": core.retired["moved"]}, 2.0)
    fresh = Core(policy())
    fresh.load(stayed, {}, now=20.0, done={"0000000000011.s1.1": chunk})
    assert moved and fresh.known("moved") and fresh.known("stayed")
    assert list(fresh.archiving) == ["stayed"]
    assert fresh.summary()["tasks"]["succeeded"] == 2


def test_chunks_and_summaries_expire_with_the_retention_period() -> None:
    core = make(ONE_NODE, dedup_window=100.0)
    finished(core, "t")
    batch = core.archive_batch(11.0)
    assert batch is not None
    core.archived(batch)
    assert core.compact(50.0) == 0 and not core.take_effects().chunks
    assert core.compact(200.0) == 1
    fx = core.take_effects()
    assert list(fx.chunks) == [batch.name] and "t" not in fx.tasks  # its record already left etcd
    assert fx.unfences == ["t.a1"] and not core.known("t")
    assert read_retired(unpack_done(batch.chunk)["t"]).state == "SUCCEEDED"


def test_a_task_recalled_from_history_is_a_duplicate_and_an_upstream_with_its_outcome() -> None:
    old = make(ONE_NODE)
    finished(old, "up")
    record = old.archive_batch(11.0).records[0]  # type: ignore[union-attr]
    core = make(ONE_NODE)  # a later leader, the dedup window long past
    core.recall([record])
    submit(core, "up", args={"again": True})
    assert "up" not in core.tasks
    submit(core, "down", after={"x": "up"})
    assert core.tasks["down"].inputs == {"x": ["up", "up.a1"]}
    assert core.summary()["tasks"]["succeeded"] == 0  # counted in its own term, not this one


def test_a_rejected_id_may_be_submitted_again_and_replaces_the_rejection() -> None:
    core = make(ONE_NODE, max_live=1)
    submit(core, "first")
    submit(core, "t")  # refused: one unfinished task is the mark
    assert core.tasks["t"].state == "REJECTED"
    core.route(1.5)
    report(core, "first", "started")
    report(core, "first", "succeeded", result_ref="r")
    core.tick(10.0)  # the door opens again; "t" is retired and queued to move
    submit(core, "t", now=11.0)
    assert core.tasks["t"].state == "PENDING" and "t" not in core.archiving
    assert core.summary()["tasks"]["rejected"] == 0


def test_a_new_leader_trusts_a_live_record_over_an_older_rejection_in_a_chunk() -> None:
    core = make(ONE_NODE)
    chunk = pack_done({"t": "1.0\x1fREJECTED\x1f\x1f\x1f\x1f"}, 1.0)
    submit(core, "t")
    live = core.take_effects().tasks["t"].to_dict()  # type: ignore[union-attr]
    fresh = Core(policy())
    fresh.load([live], {}, now=5.0, done={"0000000000001.s1.1": chunk})
    assert fresh.tasks["t"].state == "PENDING" and "t" not in fresh.retired
    assert fresh.summary()["tasks"]["rejected"] == 0
