"""Gangs in the state machine: a task on several GPUs of one node is placed on all of them
at once, nothing else shares them, and a stream of small tasks never starves it."""

from __future__ import annotations

from typing import Any

from corral.scheduler.core import Core
from corral.scheduler.ingress import Submission

from .harness import APP, make, report, sent

FOUR = {"n1": {"gpus": [{"index": i} for i in range(4)], "algorithms": ["a"]}}
TWO_BY_FOUR = {n: {"gpus": [{"index": i} for i in range(4)], "algorithms": ["a"]} for n in ("n1", "n2")}


def gang(core: Core, tid: str, gpus: int, now: float = 1.0, local: int = 1, hosts: int = 2) -> None:
    core.submit(Submission(tid, "a", {}, "s", gpus, retry={"local": local, "hosts": hosts}), now, None)


def small(core: Core, tid: str, now: float = 1.0) -> None:
    core.submit(Submission(tid, "a", {}, "s", retry={"local": 0, "hosts": 0}), now, None)


def start(core: Core, tid: str, now: float) -> None:
    report(core, tid, "started", now=now)


def holders(core: Core) -> dict[tuple[str, int], set[str]]:
    return {k: set(g.outstanding) for k, g in core.gpus.items() if g.outstanding}


def test_a_gang_is_sent_once_to_its_lead_gpu_naming_all_of_its_gpus() -> None:
    core = make(FOUR)
    gang(core, "j", 2)
    core.route(1.0)
    (message,) = sent(core.take_effects())
    assert message["task_id"] == "j" and message["gpus"] == [0, 1] and message["gpu"] == 0
    assert core.tasks["j"].attempts[0].gang == [0, 1]
    assert holders(core) == {("n1", 0): {"j"}, ("n1", 1): {"j"}}


def test_no_other_task_is_placed_on_a_gangs_gpus_while_it_runs() -> None:
    core = make(FOUR)
    gang(core, "j", 2)
    core.route(1.0)
    for i in range(20):
        small(core, f"s{i}")
    core.route(1.1)
    placed = sent(core.take_effects())
    assert {m["gpu"] for m in placed if m["task_id"] != "j"} == {2, 3}


def test_a_gang_never_takes_a_partial_set_of_gpus() -> None:
    core = make(FOUR)
    gang(core, "big", 5)
    core.route(1.0)
    assert sent(core.take_effects()) == [] and core.tasks["big"].state == "PENDING"


def test_a_gangs_gpus_are_all_on_one_node() -> None:
    core = make(TWO_BY_FOUR)
    gang(core, "j", 4)
    core.route(1.0)
    (message,) = sent(core.take_effects())
    assert len({k[0] for k, g in core.gpus.items() if "j" in g.outstanding}) == 1
    assert message["gpus"] == [0, 1, 2, 3]


def test_a_gang_behind_a_stream_of_small_tasks_starts_when_its_running_tasks_end() -> None:
    core = make(FOUR)
    for i in range(40):
        small(core, f"s{i}")
    core.route(1.0)
    first = sent(core.take_effects())
    running = {}  # the worker of each GPU starts its first message
    for m in first:
        running.setdefault(m["gpu"], m["task_id"])
    for tid in running.values():
        start(core, tid, 1.1)
    gang(core, "j", 4, now=1.2)
    for i in range(40, 80):  # the stream goes on
        small(core, f"s{i}", now=1.2)
    core.route(1.3)
    fx = core.take_effects()
    # The messages queued behind the running ones were taken back, none were added.
    assert sent(fx) == [] and fx.fences
    for tid in running.values():
        report(core, tid, "succeeded", now=2.0)
    core.route(2.0)
    (message,) = sent(core.take_effects())
    assert message["task_id"] == "j" and message["gpus"] == [0, 1, 2, 3]


def test_gpus_outside_a_reservation_keep_taking_small_tasks() -> None:
    core = make(TWO_BY_FOUR)
    for i in range(8):
        small(core, f"s{i}")
    core.route(1.0)
    core.take_effects()
    gang(core, "j", 4, now=1.1)
    for i in range(8, 40):
        small(core, f"s{i}", now=1.1)
    core.route(1.2)
    reserved_node = next(iter(core.reserved))[0]
    placed = [m for m in sent(core.take_effects()) if m["task_id"] != "j"]
    assert placed and all(m["node"] != reserved_node for m in placed)


def running_gang(gpus: int) -> Core:
    """A core whose gang "j" on `gpus` GPUs of FOUR has started."""
    core = make(FOUR)
    gang(core, "j", gpus)
    core.route(1.0)
    core.take_effects()
    start(core, "j", 1.1)
    return core


def test_a_gang_frees_all_of_its_gpus_when_it_ends() -> None:
    core = running_gang(3)
    report(core, "j", "succeeded", now=2.0)
    assert holders(core) == {} and core.reserved == {} and core.busy == {}
    for i in range(4):
        small(core, f"s{i}", now=2.1)
    core.route(2.1)
    assert {m["gpu"] for m in sent(core.take_effects())} == {0, 1, 2, 3}


def test_a_failed_gang_is_retried_on_a_whole_set_of_gpus_again() -> None:
    core = running_gang(2)
    report(core, "j", "failed", now=2.0, error=APP)
    core.route(2.0)
    (message,) = sent(core.take_effects())
    assert message["attempt_id"] == "j.a2" and len(message["gpus"]) == 2


def test_a_gang_on_a_lost_node_moves_to_another_node_whole() -> None:
    core = make(TWO_BY_FOUR)
    gang(core, "j", 2)
    core.route(1.0)
    (first,) = sent(core.take_effects())
    start(core, "j", 1.1)
    other = "n2" if first["node"] == "n1" else "n1"
    core.nodes_changed({other: TWO_BY_FOUR[other]}, 3.0)
    core.route(3.0)
    (message,) = sent(core.take_effects())
    assert message["node"] == other and len(message["gpus"]) == 2
    assert all(k[0] == other for k in holders(core))


def test_a_new_leader_keeps_a_running_gangs_gpus_for_it() -> None:
    core = make(FOUR)
    gang(core, "j", 2)
    core.route(1.0)
    fx = core.take_effects()
    start(core, "j", 1.1)
    records: list[dict[str, Any]] = [t.to_dict() for t in fx.tasks.values() if t is not None]
    new = Core(core.policy)
    new.load(records, dict(core.sessions), now=2.0, plan={f"{k[0]}/{k[1]}": {"session": s}
                                                          for k, s in core.plan.items()})
    new.nodes_changed(FOUR, 2.0)
    for i in range(8):
        small(new, f"s{i}", now=2.1)
    new.route(2.1)
    assert {m["gpu"] for m in sent(new.take_effects())} == {2, 3}
    report(new, "j", "succeeded", now=3.0)
    assert new.reserved == {}


def test_a_gang_may_take_gpus_that_no_session_holds() -> None:
    core = make(FOUR)
    core.submit(Submission("other", "a", {}, "busy"), 1.0, None)  # another session takes some
    core.route(1.0)
    gang(core, "j", 3)
    core.route(1.1)
    (message,) = sent(core.take_effects(), "j")
    assert len(message["gpus"]) == 3


def test_a_younger_smaller_gang_does_not_take_the_gpus_an_older_bigger_one_waits_for() -> None:
    core = make(FOUR)
    gang(core, "running", 2)
    core.route(1.0)
    start(core, "running", 1.1)
    gang(core, "big", 4, now=1.2)  # needs the whole node: waits for "running"
    gang(core, "small", 2, now=1.3)  # would fit on the two free GPUs
    core.route(1.4)
    assert core.tasks["small"].state == "PENDING" and not core.reservation
    report(core, "running", "succeeded", now=2.0)
    core.route(2.0)
    started = [m["task_id"] for m in sent(core.take_effects())]
    assert "big" in started and "small" not in started
