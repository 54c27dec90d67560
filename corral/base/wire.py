"""kombu's Redis message envelope, read and written without a kombu channel.

The leader moves ingress messages and GPU-queue messages in batches, one Redis round
trip per batch, and the client publishes its submissions, so both handle the envelope
themselves (Celery's send path costs more than the message): JSON `{"body", "content-type",
"content-encoding", "headers", "properties"}` with a base64 body. Only JSON bodies are
ever decoded; anything else is reported as an error, never deserialized.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from typing import Any

from kombu.serialization import loads

ACCEPT = {"application/json"}
PRIORITY_SEP = "\x06\x16"
ORIGIN = f"corral@{socket.gethostname()}"
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def decode(raw: bytes | str) -> tuple[dict[str, Any], Any, str | None]:
    """(headers, body, error) of one message as a Celery producer put it on a Redis list."""
    try:
        envelope = json.loads(raw)
        headers = envelope.get("headers") or {}
        props = envelope.get("properties") or {}
        body = envelope["body"]
        if (props.get("body_encoding") or "").lower() == "base64":
            body = base64.b64decode(body)
        content_type = envelope.get("content-type") or ""
        encoding = envelope.get("content-encoding") or "utf-8"
        if content_type == "application/json" and encoding.lower() in ("utf-8", "utf8"):
            # JSON as it came (kombu's decoder would turn its type markers into objects the
            # leader cannot write back; the worker's decoder reads them as sent)
            decoded = json.loads(body)
        else:  # anything else: refused by kombu's registry, with its reason
            decoded = loads(body, content_type, encoding, accept=ACCEPT)
        return headers if isinstance(headers, dict) else {}, decoded, None
    except Exception as exc:  # not JSON, pickle (ContentDisallowed), truncated ...
        headers = locals().get("headers")
        ctype = locals().get("content_type", "?")
        return (headers if isinstance(headers, dict) else {}, None,
                f"undecodable message ({ctype or 'no content type'}): {type(exc).__name__}: {exc}")


def queue_key(queue: str, priority: int) -> str:
    """The Redis list kombu uses for `queue` at `priority` (0 is the plain list)."""
    return queue if not priority else f"{queue}{PRIORITY_SEP}{priority}"


def encode_task(queue: str, task: str, task_id: str, kwargs: dict[str, Any],
                priority: int, origin: str = ORIGIN, kwargsrepr: str | None = None) -> tuple[str, str]:
    """(Redis list, payload) of a Celery protocol-2 message that a worker on `queue` runs
    (`kwargsrepr`: what Flower shows of the arguments; by default the ids in them)."""
    headers = {
        "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
        "root_id": task_id, "parent_id": None, "argsrepr": "()",
        "kwargsrepr": kwargsrepr if kwargsrepr is not None else
        repr({k: kwargs.get(k) for k in ("task_id", "attempt_id", "algorithm")}),
        "origin": origin, "ignore_result": True, "replaced_task_nesting": 0,
        "stamped_headers": None, "stamps": {},
    }
    body = json.dumps([[], kwargs, EMBED], separators=(",", ":")).encode()
    payload = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return queue_key(queue, priority), json.dumps(payload, separators=(",", ":"))
