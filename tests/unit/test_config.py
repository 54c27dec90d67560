"""Every setting comes from the environment (docs/contracts.md) and goes back to it for children."""

from __future__ import annotations

from corral.base.config import Settings


def test_defaults_match_the_design() -> None:
    s = Settings.from_env({})
    assert (s.etcd, s.broker, s.cluster) == ("127.0.0.1:2379", "redis://127.0.0.1:6379/0",
                                             "default")


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    s = Settings.from_env({"CORRAL_ETCD": "a:1,b:2", "CORRAL_NODE_TTL": "5"}, cluster="x")
    assert s.etcd_endpoints == [("a", 1), ("b", 2)]
    assert s.node_ttl == 5.0 and s.cluster == "x"


def test_settings_round_trip_through_the_environment() -> None:
    s = Settings(etcd="h:1", broker="redis://x/1", cluster="c", worker_events=False)
    assert Settings.from_env(s.to_env()) == s
