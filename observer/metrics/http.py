"""The metrics listener: /metrics, and the dashboard's pages beside it when they are served.

The server answers from its own threads: what it serves is rendered by the exporter
(observer/metrics/service.py) or read from the kept pages, never on the event loop. With a
web configuration file (observer/web_config.py) it speaks TLS and lets in only the
users it names, for /metrics and the pages alike.
"""

from __future__ import annotations

import http.server
import logging
import socket
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from observer.model import ConfigError
from observer.web_config import WebConfig

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PageSource(Protocol):
    """Pages served beside /metrics (the dashboard's, when ``[dashboard] serve`` is on): the
    answer to a GET of any other path, given with the request's headers (names in lower case)."""

    def respond(self, target: str, headers: Mapping[str, str]) -> _Answer: ...


class _Answer(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def body(self) -> bytes: ...


class Exporter(Protocol):
    """What the listener asks of the metrics service."""

    @property
    def pages(self) -> PageSource | None: ...

    def render(self, *, compressed: bool) -> bytes: ...


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into a socket address; empty means off."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdecimal() or int(port) > 65535:
        raise ConfigError(
            f"metrics.listen (or --listen) = {text!r}: expected HOST:PORT, like "
            "127.0.0.1:9089 or [::1]:9089 (or an empty string to serve no metrics)"
        )
    return host, int(port)


class MetricsServer(http.server.ThreadingHTTPServer):
    """Serves /metrics from its own threads."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], service: Exporter, web: WebConfig | None = None
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.web = web or WebConfig()
        super().__init__(address, _MetricsHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, client = super().get_request()
        if self.web.tls is None:
            return connection, client
        # The handshake happens in the request's own thread (_MetricsHandler.setup): a
        # client that stalls in it must not hold up accepting the next one.
        wrapped = self.web.tls.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, client

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that failed its TLS handshake or went away: a line at debug level."""
        log.debug("metrics: a request from %s failed", client_address, exc_info=True)


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = 30  # a client that stalls does not hold a thread forever
    _head = False  # answering a HEAD: the headers of a GET, without its body

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, *, head: bool) -> None:
        self._head = head
        auth = self.server.web.basic_auth
        if auth is not None and not auth.allows(self.headers.get("Authorization")):
            log.debug("metrics: %s was refused (no good user and password)", self.address_string())
            challenge = [("Content-Type", "text/plain"), ("WWW-Authenticate", "Basic")]
            self._answer(401, challenge, b"unauthorized: observer wants a user and password\n")
            return
        path = urlsplit(self.path).path
        pages = self.server.service.pages
        if path == "/metrics":
            compressed = "gzip" in self.headers.get("Accept-Encoding", "")
            try:
                body = self.server.service.render(compressed=compressed)
            except Exception:  # a bug shows as a failed scrape, never as a dead daemon
                log.exception("could not render the metrics")
                self._send(500, b"could not render the metrics (see the daemon's log)\n")
                return
            self._send(200, body, CONTENT_TYPE, "gzip" if compressed else None)
        elif pages is not None:
            try:
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = pages.respond(self.path, headers)
            except Exception:
                log.exception("could not serve %r", self.path)
                self._send(500, b"could not serve the page (see the daemon's log)\n")
                return
            self._answer(answer.status, answer.headers, answer.body)
        elif path == "/":
            page = b'<html><body><a href="/metrics">observer metrics</a></body></html>\n'
            self._send(200, page, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found: observer serves /metrics\n")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
        encoding: str | None = None,
    ) -> None:
        headers = [("Content-Type", content_type)]
        if encoding:
            headers.append(("Content-Encoding", encoding))
        self._answer(status, headers, body)

    def _answer(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304 and not self._head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: %s %s", self.address_string(), format % args)
