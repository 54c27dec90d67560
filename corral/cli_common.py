"""What every `corral` subcommand that talks to a cluster shares: the three cluster options
(flag or environment variable, the flag wins) and the client they make."""

from __future__ import annotations

from typing import Any

import typer

from corral import cli_errors
from corral.base.config import Settings

EtcdOpt = typer.Option(None, "--etcd", envvar="CORRAL_ETCD", help="etcd endpoints, comma-separated")
BrokerOpt = typer.Option(None, "--broker", envvar="CORRAL_BROKER", help="Redis broker URL")
ClusterOpt = typer.Option(None, "--cluster", envvar="CORRAL_CLUSTER", help="cluster key prefix")


def settings_for(etcd: str | None, broker: str | None, cluster: str | None) -> Settings:
    return Settings.from_env(etcd=etcd, broker=broker, cluster=cluster)


def client_for(etcd: str | None, broker: str | None, cluster: str | None) -> Any:
    """A connected client, or one line on stderr (exit 2) naming the etcd it could not reach."""
    from corral.base.etcd import EtcdUnavailable
    from corral.client import Client

    try:
        return Client(settings_for(etcd, broker, cluster))
    except EtcdUnavailable as exc:
        cli_errors.say(str(exc))
