"""A read-only HTTP endpoint per replica: liveness and role, for probes and `corral status`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StatusServer:
    def __init__(self, scheduler: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        owner = scheduler

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path not in ("/healthz", "/"):
                    self.send_error(404, "only /healthz is served")
                    return
                body = json.dumps({"id": owner.sid, "role": owner.role}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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
