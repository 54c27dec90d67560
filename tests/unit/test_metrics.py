"""What a scheduler replica's /metrics says: the core's counts become counters, its
summary becomes gauges; and what the core counts."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from corral.scheduler.core.stats import rejection_kind
from corral.scheduler.ingress import Rejection
from corral.scheduler.metrics import Metrics

from .harness import ONE_NODE, TWO_NODES, make, report, submit


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_core_counts_become_counters_with_their_labels() -> None:
    m = Metrics("s1")
    m.count({"retry_local": 2, "reassigned": 1, "quarantine": 1, "rejected:backpressure": 3}, [])
    got = samples(m)
    assert got[("corral_retries_total", (("kind", "local"),))] == 2
    assert got[("corral_reassignments_total", ())] == 1
    assert got[("corral_quarantines_total", ())] == 1
    assert got[("corral_rejected_total", (("reason", "backpressure"),))] == 3


def test_latencies_fill_the_routing_and_start_histograms() -> None:
    m = Metrics("s1")
    m.count({}, [("route", 0.002), ("start", 0.02), ("start", 0.2)])
    got = samples(m)
    assert got[("corral_routing_seconds_count", ())] == 1
    assert got[("corral_submit_to_start_seconds_count", ())] == 2
    assert got[("corral_submit_to_start_seconds_bucket", (("le", "0.025"),))] == 1


def test_the_leaders_etcd_round_trips_fill_their_own_histograms() -> None:
    m = Metrics("s1")
    m.count({}, [("commit", 0.0008), ("lease", 0.003), ("lease", 1.2)])
    got = samples(m)
    assert got[("corral_etcd_commit_seconds_bucket", (("le", "0.001"),))] == 1
    assert got[("corral_lease_refresh_seconds_count", ())] == 2
    assert got[("corral_lease_refresh_seconds_bucket", (("le", "1.0"),))] == 1


def test_the_summary_becomes_cluster_gauges() -> None:
    core = make(ONE_NODE)
    submit(core, "t")
    core.route(1.5)
    m = Metrics("s1")
    m.role, m.summary = "leader", core.summary()
    got = samples(m)
    assert got[("corral_leader", ())] == 1
    assert got[("corral_tasks", (("state", "QUEUED"),))] == 1
    assert got[("corral_gpu_health", (("gpu", "0"), ("node", "node-1"), ("state", "healthy")))] == 1
    assert sum(v for (name, _), v in got.items() if name == "corral_gpu_queue_outstanding") == 1
    assert got[("corral_node_state", (("node", "node-1"), ("state", "up")))] == 1
    assert got[("corral_admission_open", ())] == 1


def test_a_follower_without_a_summary_still_renders() -> None:
    got = samples(Metrics("s2"))
    assert got[("corral_leader", ())] == 0 and got[("corral_live_tasks", ())] == 0


def test_the_core_counts_retries_moves_and_rejections_and_notes_failures() -> None:
    core = make(TWO_NODES)
    submit(core, "t", local=1)
    core.route(1.5)
    report(core, "t", "failed", error={"type": "ValueError", "message": "bad"})
    core.submit(Rejection("r", "refused, submit again later: full"), 2.0, None)
    stats, latencies = core.take_stats()
    assert stats["retry_local"] == 1 and stats["rejected:backpressure"] == 1
    assert ("route", 0.5) in latencies
    assert core.summary()["recent"][-1]["kind"] == "attempt_failed"
    assert core.take_stats()[0] == {}  # drained


def test_rejection_reasons_fall_into_few_labels() -> None:
    assert rejection_kind("refused, submit again later: etcd is full") == "backpressure"
    assert rejection_kind("unknown algorithm 'x'") == "unknown_algorithm"
    assert rejection_kind("something else entirely") == "invalid"


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist() -> None:
    import json
    import re
    from pathlib import Path

    from corral.workers.metrics import AgentMetrics

    m = Metrics("s1")
    m.count({"retry_local": 1, "reassigned": 1, "quarantine": 1, "node_lost": 1, "task_failed": 1,
             "attempt_failed": 1, "rejected:invalid": 1}, [("route", 0.1), ("start", 0.1)])
    m.takeovers.inc()
    core = make(ONE_NODE)
    submit(core, "t")
    m.summary = core.summary()  # a session, a GPU and a node to show
    agent = AgentMetrics("n", None)
    agent.restarts.labels("0").inc()
    agent.up.labels("0").set(1)
    agent.ready.labels("0").set(1)
    from prometheus_client import generate_latest

    exported = {s.name for text in (m.render(), generate_latest(agent.registry))
                for family in text_string_to_metric_families(text.decode()) for s in family.samples}
    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana/corral-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"corral_[a-z_]+", target["expr"])}
    assert asked and asked <= exported, asked - exported
