"""The dashboard served on the metrics listener: only its pages, with the right headers."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from observer.config import Config, DashboardConfig, MetricsConfig, dashboard_directory
from observer.dashboard import markup
from observer.dashboard.serving import CONTENT_SECURITY_POLICY, Pages, page_name
from observer.metrics.http import MetricsServer
from observer.model import ConfigError

UNIT_PAGE = "unit-backup.service-0123456789ab.html"
OUTSIDE = [
    "/../observer.db", "/..%2fobserver.db", "/%2e%2e/observer.db", "/%2E%2E%2Fobserver.db",
    "/%252e%252e/observer.db", "/..", "/.", "//etc/passwd", "/etc/passwd", "/%2fetc/passwd",
    "/index.html%00", "/%00", "/index.html%00.html", "/run-1.html/", "/run-1.html/..",
    "/sub/", "/sub/run-1.html", "/.observer-dashboard.json", "/.observer-1.tmp", "/secret.html",
    "/run-1.htm", "/run-x.html", "/run-2.html", "/observer.db", "index.html", "/%ff.html",
    "/run-1.html%2f", "/unit-..-0123456789ab.html", "/%5c..%5cobserver.db",
]  # fmt: skip


@pytest.fixture
def pages_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pages"
    directory.mkdir()
    (tmp_path / "observer.db").write_text("the database: never served")
    (directory / "index.html").write_text("<!DOCTYPE html><p>overview</p>")
    (directory / "run-1.html").write_text("<!DOCTYPE html><p>run 1</p>")
    (directory / UNIT_PAGE).write_text("<!DOCTYPE html><p>unit</p>")
    (directory / ".observer-dashboard.json").write_text("{}")
    (directory / ".observer-1.tmp").write_text("half a page")
    (directory / "secret.html").write_text("not a page of ours")
    (directory / "sub").mkdir()
    (directory / "sub" / "run-1.html").write_text("in a subdirectory")
    os.symlink(tmp_path / "observer.db", directory / "run-2.html")  # named like a page
    os.symlink(directory / "sub", directory / "run-3.html")
    return directory


@pytest.mark.parametrize("target", OUTSIDE)
def test_nothing_but_the_pages_is_served(pages_dir: Path, target: str) -> None:
    answer = Pages(pages_dir).respond(target, {})
    assert answer.status == 404
    assert b"database" not in answer.body
    assert b"page of ours" not in answer.body


def test_a_link_named_like_a_page_is_not_followed(pages_dir: Path) -> None:
    assert page_name("/run-2.html") == "run-2.html"  # the name is a page's ...
    assert Pages(pages_dir).respond("/run-2.html", {}).status == 404  # ... the file is not
    assert Pages(pages_dir).respond("/run-3.html", {}).status == 404


def test_the_overview_is_at_the_root_with_the_pages_own_policy(pages_dir: Path) -> None:
    answer = Pages(pages_dir).respond("/?from=bookmark", {})
    headers = dict(answer.headers)
    assert (answer.status, answer.body) == (200, b"<!DOCTYPE html><p>overview</p>")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    common = {"version": "1", "host": "h", "generated": "now", "timezone": "UTC+0000"}
    head = markup.Shell.of(common).pieces[0]  # as every page starts
    assert (
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">' in head
    )


def test_the_style_sheet_is_served_as_css(pages_dir: Path) -> None:
    (pages_dir / "style.css").write_text("body{margin:0}")
    answer = Pages(pages_dir).respond("/style.css", {})
    assert (answer.status, answer.body) == (200, b"body{margin:0}")
    assert dict(answer.headers)["Content-Type"] == "text/css; charset=utf-8"


def test_a_page_asked_again_unchanged_is_not_sent_again(pages_dir: Path) -> None:
    pages = Pages(pages_dir)
    first = dict(pages.respond(f"/{UNIT_PAGE}", {}).headers)
    again = pages.respond(f"/{UNIT_PAGE}", {"if-none-match": first["ETag"]})
    assert (again.status, again.body) == (304, b"")
    since = pages.respond(f"/{UNIT_PAGE}", {"if-modified-since": first["Last-Modified"]})
    assert since.status == 304
    (pages_dir / f"{UNIT_PAGE}.new").write_text("<!DOCTYPE html><p>rewritten</p>")
    os.replace(pages_dir / f"{UNIT_PAGE}.new", pages_dir / UNIT_PAGE)  # as the writer does
    rewritten = pages.respond(f"/{UNIT_PAGE}", {"if-none-match": first["ETag"]})
    assert (rewritten.status, rewritten.body) == (200, b"<!DOCTYPE html><p>rewritten</p>")


def test_before_the_first_write_the_overview_says_to_come_back(tmp_path: Path) -> None:
    answer = Pages(tmp_path / "not-yet").respond("/", {})
    assert answer.status == 503
    assert Pages(tmp_path / "not-yet").respond("/run-1.html", {}).status == 404


@pytest.fixture
def server(pages_dir: Path) -> Iterator[tuple[str, int]]:
    service = SimpleNamespace(pages=Pages(pages_dir), render=lambda compressed: b"metrics 1\n")
    httpd = MetricsServer(("127.0.0.1", 0), cast(Any, service))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def request(address: tuple[str, int], method: str, target: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request(method, target)  # sent as written: http.client does not tidy the path
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_the_listener_serves_pages_beside_unchanged_metrics(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=30)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse()
    assert (metrics.status, metrics.read()) == (200, b"metrics 1\n")
    conn.request("GET", "/")
    overview = conn.getresponse()
    assert (overview.status, overview.read()) == (200, b"<!DOCTYPE html><p>overview</p>")
    assert overview.getheader("Content-Security-Policy") == CONTENT_SECURITY_POLICY
    conn.close()
    head = request(server, "HEAD", "/run-1.html")
    assert (head.status, head.getheader("Content-Length")) == (
        200,
        str(len("<!DOCTYPE html><p>run 1</p>")),
    )
    for target in OUTSIDE:
        assert request(server, "GET", target).status in {400, 404}, target
    assert request(server, "POST", "/").status == 501  # read-only


def test_serving_keeps_the_pages_beside_the_database_unless_told_where(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    served = Config(dashboard=DashboardConfig(serve=True))
    assert dashboard_directory(served, db) == tmp_path / "dashboard"
    placed = Config(dashboard=DashboardConfig(directory="/srv/pages", serve=True))
    assert dashboard_directory(placed, db) == Path("/srv/pages")
    assert dashboard_directory(Config(), db) is None


def test_serving_without_the_metrics_listener_is_a_configuration_error(tmp_path: Path) -> None:
    config = Config(dashboard=DashboardConfig(serve=True), metrics=MetricsConfig(listen=""))
    with pytest.raises(ConfigError, match=r"dashboard.serve = true .* metrics.listen"):
        dashboard_directory(config, tmp_path / "observer.db")
