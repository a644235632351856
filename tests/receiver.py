"""A real HTTP receiver on loopback for alert tests: it records every request it gets.

apprise's ``json://127.0.0.1:PORT/`` posts ``{"title": ..., "message": ..., "type": ...}``
to it; heartbeat pings are GETs. It can answer with an error status, or hang.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from tests.waiting import wait_for


@dataclass(frozen=True, slots=True)
class Received:
    """One request: its method, path, JSON body (if any) and when it arrived (monotonic)."""

    method: str
    path: str
    body: dict[str, Any] | None
    at: float


class Receiver:
    """Answers ``status`` to everything, after hanging ``hang_seconds`` if that is set."""

    def __init__(self, status: int = 200, hang_seconds: float = 0.0) -> None:
        self.status = status
        self.hang_seconds = hang_seconds
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                receiver._record(Received("POST", self.path, body, time.monotonic()))
                self._answer()

            def do_GET(self) -> None:
                receiver._record(Received("GET", self.path, None, time.monotonic()))
                self._answer()

            def _answer(self) -> None:
                if receiver.hang_seconds:
                    receiver._closing.wait(receiver.hang_seconds)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def json_url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping"

    def _record(self, request: Received) -> None:
        with self._lock:
            self.received.append(request)

    def posts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body or {} for r in self.received if r.method == "POST"]

    def wait_for(self, count: int, timeout: float = 30, method: str = "POST") -> list[Received]:
        """Wait until ``count`` requests of ``method`` arrived; return them."""

        def arrived() -> list[Received] | None:
            with self._lock:
                got = [r for r in self.received if r.method == method]
            return got if len(got) >= count else None

        return wait_for(arrived, timeout=timeout, what=f"{count} {method}s at the receiver")

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
