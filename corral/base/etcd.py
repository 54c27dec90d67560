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


def connect(settings: Settings, timeout: float = 5.0) -> MultiEndpointEtcd3Client:
    secure = bool(settings.etcd_ca)
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
        return MultiEndpointEtcd3Client(
            endpoints=endpoints,
            timeout=timeout,
            user=settings.etcd_user or None,
            password=settings.etcd_password or None,
            failover=True,
        )
    except Exception as exc:  # grpc raises its own types for auth/connect failures
        raise EtcdUnavailable(f"cannot reach etcd at {settings.etcd}: {exc}") from exc


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
