"""Each replica's HTTP port, read-only: `/healthz` (liveness and role, for probes and
`corral status`), `/metrics` (Prometheus, metrics.py), `/api/status` (the `corral status
--json` document) and `/`, the status page (status_page.html: its script polls
`/api/status` every second, so any replica shows the leader's view, live). Nothing here changes state, so
nothing here asks for credentials; bind it where your network policy wants it."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from corral.base.etcd import get_json
from corral.base.status import cluster_status

log = logging.getLogger("corral.scheduler")

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
PAGE = resources.files("corral.scheduler").joinpath("status_page.html").read_text()


def metrics_text(scheduler: Any) -> bytes:
    """Prometheus text: the replica's counters, and the cluster gauges from the leader's
    summary (its own while it leads; the copy in etcd otherwise)."""
    scheduler.metrics.role = scheduler.role
    scheduler.metrics.summary = (scheduler._summary_last if scheduler.token is not None
                                 else get_json(scheduler.etcd, scheduler.keys.summary) or {})
    return scheduler.metrics.render()


def status_document(scheduler: Any) -> dict[str, Any]:
    """The `corral status --json` document, for the status page."""
    return {"cluster": scheduler.settings.cluster, "replica": scheduler.sid,
            **cluster_status(scheduler.etcd, scheduler.keys)}


class StatusServer:
    def __init__(self, scheduler: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        owner = scheduler

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/healthz":
                        self._send(200, "application/json", json.dumps({"id": owner.sid, "role": owner.role}))
                    elif path == "/metrics":
                        self._send(200, PROMETHEUS, metrics_text(owner))
                    elif path == "/api/status":
                        self._send(200, "application/json", json.dumps(status_document(owner)))
                    elif path in ("/", "/index.html"):
                        self._send(200, "text/html; charset=utf-8", PAGE)
                    else:
                        self.send_error(404, "served: /, /api/status, /metrics, /healthz")
                except Exception as exc:  # etcd away, say: say so, and keep serving
                    log.warning("GET %s failed: %s", path, exc)
                    self._send(503, "application/json", json.dumps({"error": f"{type(exc).__name__}: {exc}"}))

            def _send(self, code: int, kind: str, body: str | bytes) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="corral-http").start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
