"""Careless and hostile input, one finding each: what once took the cluster down or let a
message do what it should not, now refused with a reason or contained."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corral.base.config import Settings
from corral.base.etcd import EtcdUnavailable, connect
from corral.base.keys import BUILTIN_ALGORITHMS
from corral.base.process import free_port
from corral.base.wire import decode
from corral.pipelines import sources
from corral.scheduler.ingress import Rejection, SessionRequest, Submission, read
from tests.hostile import Deep, envelope, nest

from .harness import make, report, sent, submit

FOUR_GPUS = {"n1": {"gpus": [{"index": i} for i in range(4)], "algorithms": ["a"]}}


def ingress(name: str, kwargs: dict, message_id: str = "m-1") -> list:
    raw = envelope(name, kwargs, message_id)
    headers, body, error = decode(raw)
    return read(headers, body, error, raw, known_algorithms=BUILTIN_ALGORITHMS, inline_limit=256 * 1024)


def submit_msg(**kwargs: object) -> list:
    return ingress("corral.submit", {"algorithm": "corral.echo", **kwargs})


def session_msg(**kwargs: object) -> list:
    return ingress("corral.session", {"name": "s", **kwargs})


def rejected(parsed: list) -> str:
    (only,) = parsed
    assert isinstance(only, Rejection), only
    return only.reason


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 10**30, 2.5, True, "3"])
def test_finding_1_a_session_with_a_number_that_is_not_a_whole_count_is_refused(value: object) -> None:
    assert "fixed_workers must be a whole number" in rejected(session_msg(fixed_workers=value))


def test_finding_1_the_refusal_of_a_session_is_recorded_and_the_core_goes_on() -> None:
    core = make()
    for parsed in session_msg(fixed_workers=float("inf")):
        core.submit(parsed, 1.0, None)
    assert core.tasks["m-1"].state == "REJECTED" and "fixed_workers" in core.tasks["m-1"].reason
    submit(core, "after")
    core.route(1.0)
    assert sent(core.take_effects(), "after")


@pytest.mark.parametrize("depth", [33, 900])
def test_finding_2_args_nested_deeper_than_32_levels_are_refused_at_the_door(depth: int) -> None:
    assert "nest deeper than 32 levels" in rejected(submit_msg(args=nest(depth)))


@pytest.mark.parametrize("depth", [5000, 10_000])
def test_finding_2_args_too_deep_even_to_decode_are_refused_as_undecodable(depth: int) -> None:
    assert "undecodable" in rejected(submit_msg(args=Deep(depth)))


def test_finding_2_args_nested_32_levels_are_taken() -> None:
    (parsed,) = submit_msg(args=nest(31))
    assert isinstance(parsed, Submission)


@pytest.mark.parametrize("task_id", ["x\n", "x\r", "x ", "\nx"])
def test_finding_3_a_task_id_is_matched_whole(task_id: str) -> None:
    assert "task_id" in rejected(submit_msg(task_id=task_id))


def test_finding_3_a_session_name_is_matched_whole() -> None:
    assert "session" in rejected(submit_msg(session="s\n"))
    assert "session name" in rejected(ingress("corral.session", {"name": "s\n"}))


@pytest.mark.parametrize("retry", [{"local": 10**30}, {"hosts": 10**30}, {"local": -1}, {"local": 1.5},
                                   {"backoff": "x"}, {"backoff": float("nan")}, {"backoff": float("inf")},
                                   {"backoff": 10**6}, {"local": True}, {"other": 1}, "2"])
def test_finding_4_a_retry_budget_or_backoff_out_of_bounds_is_refused(retry: object) -> None:
    assert "retry" in rejected(submit_msg(retry=retry))


@pytest.mark.parametrize("ratio", [float("nan"), float("inf"), 0, -1, "2", 10**9])
def test_finding_5_a_share_ratio_that_is_not_a_finite_positive_number_is_refused(ratio: object) -> None:
    assert "share_ratio" in rejected(session_msg(share_ratio=ratio))


def test_finding_5_nan_in_args_is_refused_as_not_standard_json() -> None:
    assert "standard JSON" in rejected(submit_msg(args={"x": float("nan")}))


def test_finding_6_fixed_workers_of_every_gpu_leave_one_gpu_to_the_other_sessions() -> None:
    core = make(FOUR_GPUS)
    core.submit(SessionRequest("hog", "open", fixed_workers=4, owner="c1"), 1.0, None)
    core.route(1.0)
    assert "one GPU stays shared" in core.sessions["hog"]["note"]
    submit(core, "other", session="busy")
    core.route(2.0)
    assert sent(core.take_effects(), "other")
    assert sum(1 for g in core.summary()["gpus"] if g["session"] == "hog") == 3


def test_finding_7_opening_an_open_session_with_other_settings_is_refused_unless_updating() -> None:
    core = make()
    core.submit(SessionRequest("s", "open", fixed_workers=1, owner="c1"), 1.0, None)
    core.submit(SessionRequest("s", "open", fixed_workers=2, owner="c2", request_id="r2"), 1.1, None)
    assert core.sessions["s"]["fixed_workers"] == 1
    assert "open with other settings" in core.tasks["r2"].reason
    core.submit(SessionRequest("s", "open", fixed_workers=2, owner="c2", update=True), 1.2, None)
    assert core.sessions["s"]["fixed_workers"] == 2 and core.sessions["s"]["owner"] == "c1"


def test_finding_7_a_session_is_closed_by_its_owner_not_by_whoever_leaves_last() -> None:
    core = make()
    core.submit(SessionRequest("s", "open", fixed_workers=1, owner="c1"), 1.0, None)
    core.submit(SessionRequest("s", "open", fixed_workers=1, owner="c2"), 1.1, None)  # joins
    core.submit(SessionRequest("s", "close", owner="c2"), 1.2, None)
    assert core.sessions["s"]["state"] == "open"
    core.submit(SessionRequest("s", "close", owner="c1"), 1.3, None)
    assert core.sessions["s"]["state"] == "closed"


def test_finding_7_an_operator_closes_any_session_with_force() -> None:
    core = make()
    core.submit(SessionRequest("s", "open", fixed_workers=1, owner="c1"), 1.0, None)
    core.submit(SessionRequest("s", "close", owner="ops", force=True), 1.1, None)
    assert core.sessions["s"]["state"] == "closed"


def test_finding_8_a_sink_deletes_only_a_segment_in_a_spool_directory(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    spool = tmp_path / "spool"
    spool.mkdir()
    segment = spool / "segment-000000000.avi"
    segment.write_bytes(b"frames")
    assert sources.spooled_segment(str(segment)) is None  # no marker: not a spool directory
    (spool / sources.SPOOL_MARKER).touch()
    assert sources.spooled_segment(str(segment)) == segment
    assert sources.spooled_segment(str(victim)) is None
    link = spool / "segment-000000001.avi"
    link.symlink_to(victim)
    assert sources.spooled_segment(str(link)) is None
    assert sources.spooled_segment(str(spool / ".." / "precious.txt")) is None
    for odd in (None, 1, "", "/", os.devnull):
        assert sources.spooled_segment(odd) is None


def test_finding_9_a_client_of_an_etcd_that_is_not_there_says_where_at_once() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(EtcdUnavailable, match=f"cannot reach etcd at {address}"):
        connect(Settings(etcd=address), probe=True, probe_timeout=1.0)


def test_finding_10_an_etcd_password_without_tls_is_refused_with_a_reason() -> None:
    with pytest.raises(EtcdUnavailable, match="need TLS"):
        connect(Settings(etcd_user="root", etcd_password="secret"))


def test_a_worker_death_does_not_count_against_its_gpu_and_three_make_a_task_poison() -> None:
    core = make()
    submit(core, "p", local=5, hosts=5)
    core.route(1.0)
    for n in range(3):
        report(core, "p", "started", now=1.1 + n)
        report(core, "p", "failed", now=1.2 + n, error={"type": "WorkerLost", "message": "killed"})
        core.route(1.3 + n)
    assert core.tasks["p"].state == "FAILED" and "poison" in core.tasks["p"].reason
    assert len(core.tasks["p"].attempts) == 3
    for g in core.summary()["gpus"]:
        assert g["state"] == "healthy" and g["consecutive_failures"] == 0


def test_silence_on_a_gpu_counts_as_a_death_of_the_attempt_its_worker_took_first() -> None:
    core = make(heartbeat_timeout=10.0)
    submit(core, "p", local=5, hosts=5)
    for n in range(3):
        core.route(1.0 + 20 * n)
        core.tick(1.0 + 20 * n + 11)  # no word from the worker: it died taking the message
    assert core.tasks["p"].state == "FAILED" and "poison" in core.tasks["p"].reason


def test_a_rejection_of_a_message_with_no_usable_id_is_recorded_under_one_made_from_its_bytes() -> None:
    raw = b"\x00not a message"
    headers, body, error = decode(raw)
    (first,) = read(headers, body, error, raw, known_algorithms=BUILTIN_ALGORITHMS, inline_limit=10)
    (again,) = read(headers, body, error, raw, known_algorithms=BUILTIN_ALGORITHMS, inline_limit=10)
    assert first.task_id == again.task_id and first.task_id.startswith("rejected-")
    assert "undecodable" in first.reason
    json.dumps(first.reason)



def test_args_shaped_like_a_blob_reference_are_reserved() -> None:
    assert "reserved" in rejected(submit_msg(args={"$blob": "corral:local:result:x:x.a1"}))
