"""Batch-capable algorithms: which members of a message share a call, a call that raises
split so that only the bad input fails, and the leader sizing calls by the declared limits."""

from __future__ import annotations

from typing import Any

from corral.tasks import registry
from corral.tasks.batching import call, calls
from corral.tasks.context import Context

from .harness import make, sent, submit

CTX = Context("t", "t.a1", "n", 0, "s")


def member(tid: str, algorithm: str = "corral.batch", **extra: Any) -> dict[str, Any]:
    return {"task_id": tid, "attempt_id": f"{tid}.a1", "algorithm": algorithm, "args": {"x": tid}, **extra}


def test_consecutive_members_of_a_batch_capable_algorithm_share_one_call() -> None:
    msgs = [member("a"), member("b"), member("c", "corral.echo"), member("d"), member("e"),
            member("f", inputs={"up": ["u", "u.a1"]})]
    got = [([m["task_id"] for m in group], algo is not None) for group, algo in calls(msgs)]
    assert got == [(["a", "b"], True), (["c"], False), (["d", "e"], True), (["f"], False)]


def test_a_call_holds_at_most_the_algorithms_largest_batch() -> None:
    groups = [len(group) for group, _ in calls([member(str(i)) for i in range(70)])]
    assert groups == [32, 32, 6]


def test_one_bad_input_fails_only_its_own_task() -> None:
    algo = registry.get("corral.batch")
    msgs = [member("a"), {**member("b"), "args": {"fail": "cannot read this image"}}, member("c")]
    (a_ok, a), (b_ok, b), (c_ok, _) = call(algo, msgs, CTX)
    assert a_ok and c_ok and not b_ok
    assert b["type"] == "ValueError" and "cannot read this image" in b["message"]
    assert '"batch": 1' in a  # run again alone, after the call of three raised


def test_a_call_without_a_bad_input_runs_once() -> None:
    outcomes = call(registry.get("corral.batch"), [member(str(i)) for i in range(8)], CTX)
    assert all(ok and '"batch": 8' in value for ok, value in outcomes)


BATCHING = {"n1": {"gpus": [{"index": 0}], "algorithms": ["e"],
                   "batching": {"e": {"max": 16, "budget": 0.5}}}}


def test_the_leader_fills_a_call_to_the_declared_largest_batch() -> None:
    core = make(BATCHING, depth=1)
    for i in range(40):
        submit(core, f"t{i}", algorithm="e")
    core.route(1.0)
    (message,) = core.take_effects().dispatches
    assert len(message.message["batch"]) == 16


def test_the_leader_keeps_a_call_within_its_budget_at_the_measured_time_per_input() -> None:
    core = make(BATCHING, depth=1)
    core.runtime["e"] = 0.1  # 5 inputs fit the 0.5 s budget
    for i in range(40):
        submit(core, f"t{i}", algorithm="e")
    core.route(1.0)
    assert len(sent(core.take_effects())) == 5


def test_malformed_batching_declarations_are_ignored() -> None:
    declared = {"a": {"max": "lots"}, "b": [], "c": {"max": 4, "budget": -1}}
    nodes = {"n1": {"gpus": [{"index": 0}], "batching": declared}}
    assert make(nodes).batching == {}


def test_a_batch_capable_algorithm_called_for_one_input_gets_a_list_of_one() -> None:
    from corral.tasks.runner import alone

    assert alone(registry.get("corral.batch"), {"x": 1}, CTX) == {"echo": {"x": 1}, "batch": 1}
