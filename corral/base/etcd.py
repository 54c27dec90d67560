"""Building etcd clients that survive a member's death.

python-etcd3 marks an endpoint failed for 300 s after one error unless it is a
multi-endpoint client with a short retry time, so every corral process builds its
client here.
"""

from __future__ import annotations

import json
from typing import Any

from etcd3.client import Endpoint, MultiEndpointEtcd3Client
from etcd3.utils import prefix_range_end

from corral.base.config import Settings


class EtcdUnavailable(RuntimeError):
    """etcd could not be reached; the message says where we tried."""


def connect(settings: Settings, timeout: float = 5.0, probe: bool = False,
            probe_timeout: float = 3.0) -> MultiEndpointEtcd3Client:
    """A client of every endpoint in the settings. `probe`: ask etcd once, within
    `probe_timeout` seconds, so that a user learns at once (and in one line) that etcd is
    not there, rather than at the first read."""
    secure = bool(settings.etcd_ca)
    if (settings.etcd_user or settings.etcd_password) and not secure:
        raise EtcdUnavailable(
            "etcd user and password need TLS: set CORRAL_ETCD_CA (and CORRAL_ETCD_CERT, "
            "CORRAL_ETCD_KEY for client certificates); gRPC sends credentials only over TLS")
    creds = None
    if secure:
        creds = MultiEndpointEtcd3Client.get_secure_creds(
            settings.etcd_ca, settings.etcd_key or None, settings.etcd_cert or None
        )
    endpoints = [
        Endpoint(host, port, secure=secure, creds=creds, time_retry=0.5)
        for host, port in settings.etcd_endpoints
    ]
    try:
        client = MultiEndpointEtcd3Client(
            endpoints=endpoints,
            timeout=probe_timeout if probe else timeout,
            user=settings.etcd_user or None,
            password=settings.etcd_password or None,
            failover=True,
        )
        if probe:
            client.get_response("/corral/")  # one cheap read: is anyone there?
            client.timeout = timeout
        return client
    except Exception as exc:  # grpc raises its own types for auth/connect failures
        raise EtcdUnavailable(f"cannot reach etcd at {settings.etcd}: {_cause(exc)}") from exc


def _cause(exc: BaseException) -> str:
    """The cause of a failed etcd call in a few words (gRPC's own text runs to lines)."""
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():
        if "details" in line or "Failed" in line:
            text = line.strip()
            break
    text = text.splitlines()[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}" if text != type(exc).__name__ else text


def get_json(client: MultiEndpointEtcd3Client, key: str) -> Any:
    value, _meta = client.get(key)
    return None if value is None else json.loads(value)


def snapshot(client: MultiEndpointEtcd3Client, prefix: str, page: int = 500) -> tuple[dict[str, bytes], int]:
    """Every (key suffix -> raw value) under a prefix at one revision, read in pages to stay
    under gRPC's message limit; and that revision, to watch from."""
    start = prefix.encode()
    end = prefix_range_end(start)
    out: dict[str, bytes] = {}
    revision = None
    while True:
        resp = client.get_range_response(start, end, limit=page, revision=revision)
        revision = revision or resp.header.revision
        for kv in resp.kvs:
            out[kv.key.decode()[len(prefix):]] = kv.value
        if not resp.more or not resp.kvs:
            return out, revision
        start = resp.kvs[-1].key + b"\0"


def prefix_json(client: MultiEndpointEtcd3Client, prefix: str) -> dict[str, Any]:
    """All JSON values under a prefix, keyed by the key's suffix; unreadable values skipped."""
    out: dict[str, Any] = {}
    for key, value in snapshot(client, prefix)[0].items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            continue
    return out
