"""Ingress validation (docs/contracts.md, Ingress message) as a pure function."""

from __future__ import annotations

import pytest

from corral.base.keys import SUBMIT_TASK
from corral.base.retry import DEFAULT
from corral.scheduler.ingress import AdminRequest, Rejection, SessionRequest, Submission, parse, parse_all

KNOWN = frozenset({"corral.echo", "corral.sleep"})


def celery_v2(kwargs: object, name: str = "corral.submit", mid: str = "m-1") -> tuple[dict, list]:
    return {"task": name, "id": mid}, [[], kwargs, {}]


def run(kwargs: object, **kw: object):
    headers, body = celery_v2(kwargs, **kw)
    return parse(headers, body, known_algorithms=KNOWN, inline_limit=1000)


def test_a_valid_message_becomes_a_submission_with_default_retry() -> None:
    got = run({"algorithm": "corral.echo", "args": {"x": 1}, "session": "s1"})
    assert got == Submission("m-1", "corral.echo", {"x": 1}, "s1", 1, DEFAULT.to_dict())


def test_the_task_id_kwarg_is_the_idempotency_key() -> None:
    assert run({"algorithm": "corral.echo", "task_id": "mine"}).task_id == "mine"


def test_a_fresh_id_is_marked_so_and_an_id_is_not_fresh_by_default() -> None:
    assert run({"algorithm": "corral.echo", "fresh": True}).fresh is True
    assert run({"algorithm": "corral.echo", "task_id": "mine"}).fresh is False


def test_a_fresh_flag_that_is_not_true_or_false_is_rejected() -> None:
    got = run({"algorithm": "corral.echo", "fresh": "yes"})
    assert isinstance(got, Rejection) and "'fresh' must be true or false" in got.reason


def test_protocol_one_messages_are_understood() -> None:
    body = {"task": "corral.submit", "id": "p1", "kwargs": {"algorithm": "corral.echo"}}
    got = parse({}, body, known_algorithms=KNOWN, inline_limit=1000)
    assert isinstance(got, Submission) and got.task_id == "p1"


def test_missing_algorithm_is_rejected() -> None:
    got = run({"args": 1})
    assert isinstance(got, Rejection) and "missing 'algorithm'" in got.reason


def test_unknown_algorithm_is_rejected_naming_the_known_ones() -> None:
    got = run({"algorithm": "x.y"})
    assert isinstance(got, Rejection)
    assert "unknown algorithm 'x.y'" in got.reason and "corral.echo" in got.reason


def test_oversized_args_are_rejected() -> None:
    got = run({"algorithm": "corral.echo", "args": "x" * 2000})
    assert isinstance(got, Rejection) and "inline limit" in got.reason


def test_bad_retry_is_rejected() -> None:
    got = run({"algorithm": "corral.echo", "retry": {"local": -1}})
    assert isinstance(got, Rejection) and "retry.local" in got.reason


def test_a_task_may_ask_for_several_gpus_of_one_node() -> None:
    got = run({"algorithm": "corral.echo", "gpus": 4})
    assert not isinstance(got, Rejection) and got.gpus == 4


def test_a_task_asking_for_more_gpus_than_a_node_could_hold_is_rejected() -> None:
    got = run({"algorithm": "corral.echo", "gpus": 65})
    assert isinstance(got, Rejection) and "one node" in got.reason


def test_a_non_dict_kwargs_is_rejected() -> None:
    assert isinstance(run(["not", "kwargs"]), Rejection)


def test_an_unsafe_task_id_is_rejected() -> None:
    got = run({"algorithm": "corral.echo", "task_id": "../../leader"})
    assert isinstance(got, Rejection) and "task_id" in got.reason


def test_other_task_names_are_rejected() -> None:
    got = run({"algorithm": "corral.echo"}, name="something.else")
    assert isinstance(got, Rejection) and "not accepted" in got.reason


def test_session_messages_open_sessions() -> None:
    got = run({"name": "video", "fixed_workers": 2, "share_ratio": 3}, name="corral.session")
    assert got == SessionRequest("video", "open", 2, 3.0, None, 0, (), request_id="m-1")


def test_session_with_non_positive_ratio_is_rejected() -> None:
    assert isinstance(run({"name": "v", "share_ratio": 0}, name="corral.session"), Rejection)


def test_a_batch_message_becomes_one_submission_per_task() -> None:
    kwargs = {"tasks": [{"algorithm": "corral.echo", "args": {"i": i}, "task_id": f"b{i}"} for i in range(3)]}
    got = parse_all({"task": SUBMIT_TASK, "id": "m1"}, [[], kwargs, {}], known_algorithms=KNOWN,
                    inline_limit=1000)
    assert [p.task_id for p in got] == ["b0", "b1", "b2"]
    assert all(isinstance(p, Submission) for p in got)


def test_one_bad_task_in_a_batch_is_rejected_alone() -> None:
    kwargs = {"tasks": [{"algorithm": "corral.echo", "task_id": "ok"},
                        {"algorithm": "nope", "task_id": "bad"}, "not an object"]}
    got = parse_all({"task": SUBMIT_TASK, "id": "m1"}, [[], kwargs, {}], known_algorithms=KNOWN,
                    inline_limit=1000)
    assert isinstance(got[0], Submission)
    assert isinstance(got[1], Rejection) and "unknown algorithm" in got[1].reason
    assert isinstance(got[2], Rejection) and got[2].task_id == "m1-2"


def test_an_empty_batch_is_rejected_with_a_reason() -> None:
    (got,) = parse_all({"task": SUBMIT_TASK, "id": "m1"}, [[], {"tasks": []}, {}],
                       known_algorithms=KNOWN, inline_limit=1000)
    assert isinstance(got, Rejection) and "non-empty list" in got.reason


def test_upstream_tasks_are_named_by_input_or_listed_by_id() -> None:
    named = run({"algorithm": "corral.echo", "after": {"frames": "up-1"}})
    listed = run({"algorithm": "corral.echo", "after": ["up-1", "up-2"]})
    assert named.after == {"frames": "up-1"}
    assert listed.after == {"up-1": "up-1", "up-2": "up-2"}


def test_a_bad_upstream_list_is_rejected_with_a_reason() -> None:
    for after, says in [("up", "must be a list"), ({"x": 3}, "not a valid task id"),
                        (["m-1"], "the task itself"), ({"bad name!": "up"}, "input name")]:
        got = run({"algorithm": "corral.echo", "after": after})
        assert isinstance(got, Rejection) and says in got.reason, (after, got)


def admin(kwargs: object):
    return run(kwargs, name="corral.admin")


@pytest.mark.parametrize("task_id", [None, 7, ["t"], "t\n", "", "x" * 300, float("nan")])
def test_a_task_action_without_a_valid_task_id_is_rejected(task_id: object) -> None:
    got = admin({"action": "task.cancel", "task_id": task_id})
    assert isinstance(got, Rejection) and "task_id" in got.reason


def test_a_task_action_names_its_task_and_needs_no_node() -> None:
    got = admin({"action": "task.migrate", "task_id": "t-1", "reason": 5})
    assert isinstance(got, AdminRequest)
    assert (got.action, got.task_id, got.node) == ("task.migrate", "t-1", "")


@pytest.mark.parametrize("move, moves", [(False, False), (True, True), (None, True), ("no", True), (0, True)])
def test_only_an_explicit_false_lets_a_drain_leave_running_work_in_place(move: object, moves: bool) -> None:
    got = admin({"action": "node.drain", "node": "n1", "move": move})
    assert isinstance(got, AdminRequest) and got.move is moves


@pytest.mark.parametrize("gpus", [0, -1, 1.0, float("nan"), float("inf"), True, "2", [2], 10**30])
def test_a_gpu_count_that_is_not_a_whole_number_from_1_to_64_is_rejected(gpus: object) -> None:
    assert isinstance(run({"algorithm": "corral.echo", "gpus": gpus}), Rejection)
