"""The dashboard the real daemon writes for a real systemd, read by a real browser."""

from __future__ import annotations

import http.client
import socket
import struct
import zlib
from pathlib import Path

import pytest

from observer.dashboard import pages as site
from observer.dashboard.serving import CONTENT_SECURITY_POLICY
from observer.metrics.http import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tests.integration.browser import Browser, Loaded, chromium_or_skip
from tests.integration.observed import ObserverDaemon
from tests.pages import Element, overview_rows, parse
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
ESCAPED_INSTANCE = "backup@home-user-My\\x20Files.service"
LEAKY_SCRIPT = """\
#!/bin/sh
echo "<script>document.title='pwned'</script>"
echo "</textarea><b id=injected>bold</b>"
printf '\\033[31mred alert\\033[0m\\n'
echo "backup target unreachable" >&2
exit 2
"""
PANEL = (0xF6, 0xF8, 0xFA)  # the header's background (--panel in style.css)
EXPECTED_HEALTH = {
    "backup.service": "ok",
    ESCAPED_INSTANCE: "ok",
    "leaky.service": "failing",
    "renew.service": "ok",
    "worker.service": "running",
}


@pytest.fixture
def browser() -> Browser:
    return Browser(chromium_or_skip())


def oneshot(command: str, extra: str = "") -> str:
    return f"[Service]\nType=oneshot\nExecStart={command}\n{extra}"


def test_the_browser_checks_see_a_script_that_ran_and_a_console_message(
    browser: Browser, tmp_path: Path
) -> None:
    # The checks below must be able to fail: here a page runs a script, and they notice.
    page = tmp_path / "scripted.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>before</title></head><body><p>text</p>"
        "<script>document.title='pwned'; console.error('boom')</script></body></html>"
    )

    loaded = browser.load(page)

    assert loaded.dom.find("title").text() == "pwned"
    assert any("boom" in message for message in loaded.console)


def test_the_daemons_dashboard_shows_every_unit_and_a_failed_runs_output_safely(
    sandbox: Sandbox, tmp_path: Path, browser: Browser
) -> None:
    pages = tmp_path / "pages"
    observed = ObserverDaemon(
        sandbox,
        tmp_path,
        config=f'[dashboard]\ndirectory = "{pages}"\nquiet_seconds = 1\nmin_interval_seconds = 1\n',
    )
    try:
        observed.start()
        run_units(sandbox)
        [leaky] = observed.finished_runs("leaky", 1, timeout=60)
        run_page = pages / site.run_page(leaky["id"])
        wait_for(
            lambda: written_health(pages) == EXPECTED_HEALTH and "red alert" in text_of(run_page),
            timeout=90,
            what=f"the dashboard in {pages} to show every unit and the failed run's output",
        )

        overview = loaded_cleanly(browser, pages / "index.html")
        failed = loaded_cleanly(browser, run_page)
        instance = loaded_cleanly(browser, pages / site.unit_page(ESCAPED_INSTANCE))
        shot = browser.screenshot(pages / "index.html", ARTIFACTS / "overview.png", height=700)
        assert pixel(shot, 4, 4) == PANEL, "style.css did not apply to a page opened from disk"
        browser.screenshot(run_page, ARTIFACTS / "failed-run.png", height=900)
        assert observed.stop() == 0
    finally:
        observed.close()

    rows = overview_rows(overview.dom)
    assert {unit: rows.get(unit) for unit in EXPECTED_HEALTH} == EXPECTED_HEALTH
    failing_first = list(rows.values())
    assert failing_first[: failing_first.count("failing")] == ["failing"] * failing_first.count(
        "failing"
    )
    renew = row_cells(overview.dom, "renew.service")
    assert renew["next run"] != "-"
    assert overview.dom.find("title").text().startswith("observer: ")

    # The failed run's output is on its page, as text: nothing it printed ran or became markup.
    assert failed.dom.find("title").text() == f"run {leaky['id']} of leaky.service: observer"
    assert failed.dom.find_all("script") == []
    assert not [e for e in failed.dom.iter() if e.attrs.get("id") == "injected"]
    output = failed.dom.find("pre", "output").text()
    assert "<script>document.title='pwned'</script>" in output
    assert "</textarea><b id=injected>bold</b>" in output
    assert "\\x1b[31mred alert\\x1b[0m" in output
    assert "backup target unreachable" in output
    facts = dict(zip(texts(failed.dom, "dt"), texts(failed.dom, "dd"), strict=True))
    assert (facts["Result"], facts["Exit status"]) == ("exit-code", "2")

    assert ESCAPED_INSTANCE in instance.dom.find("h1").text()


def pixel(png: Path, x: int, y: int) -> tuple[int, int, int]:
    """The colour of one pixel of a screenshot (8-bit RGB or RGBA, not interlaced)."""
    data, chunks, at = png.read_bytes(), [], 8
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.append((kind, data[at + 8 : at + 8 + size]))
        at += 12 + size
    width, _, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, colour) in {(8, 2), (8, 6)}, (depth, colour)
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride, above = width * step, bytearray(width * step)
    for row in range(y + 1):
        kind, line = (
            raw[row * (stride + 1)],
            bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = above[i], above[i - step] if i >= step else 0
            guess = left + up - corner
            nearest = min((abs(guess - left), 0, left), (abs(guess - up), 1, up),
                          (abs(guess - corner), 2, corner))[2]  # fmt: skip
            line[i] = (line[i] + (0, left, up, (left + up) // 2, nearest)[kind]) & 0xFF
        above = line
    r, g, b = above[x * step : x * step + 3]
    return r, g, b


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(port: int, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """A GET of ``target`` exactly as written (http.client does not tidy paths)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    except OSError:
        return 0, {}, b""
    finally:
        conn.close()


def test_the_daemon_serves_its_dashboard_on_the_metrics_port_to_a_browser_and_nothing_else(
    sandbox: Sandbox, tmp_path: Path, browser: Browser
) -> None:
    port = free_port()
    observed = ObserverDaemon(
        sandbox,
        tmp_path,
        config=f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        "[dashboard]\nserve = true\nquiet_seconds = 1\nmin_interval_seconds = 1\n",
    )
    pages = tmp_path / "dashboard"  # beside the database: no directory was configured
    base = f"http://127.0.0.1:{port}"
    try:
        observed.start()
        run_units(sandbox)
        [leaky] = observed.finished_runs("leaky", 1, timeout=60)
        run_target = f"/{site.run_page(leaky['id'])}"
        wait_for(
            lambda: (
                served_health(port) == EXPECTED_HEALTH
                and b"red alert" in fetch(port, run_target)[2]
            ),
            timeout=90,
            what=f"{base}/ to show every unit and the failed run's output",
        )
        overview = loaded_cleanly(browser, f"{base}/")
        failed = loaded_cleanly(browser, base + run_target)
        instance = loaded_cleanly(browser, f"{base}/{site.unit_page(ESCAPED_INSTANCE)}")
        shot = browser.screenshot(f"{base}/", ARTIFACTS / "served-overview.png", height=700)
        assert pixel(shot, 4, 4) == PANEL, "style.css did not apply to a served page"
        css = fetch(port, "/style.css")
        assert (css[0], css[1]["Content-Type"]) == (200, "text/css; charset=utf-8")

        status, headers, body = fetch(port, "/")
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert headers["Cache-Control"] == "no-cache"
        assert body == (pages / "index.html").read_bytes()
        assert (
            fetch(port, run_target, **{"If-None-Match": fetch(port, run_target)[1]["ETag"]})[0]
            == 304
        )
        metrics = fetch(port, "/metrics")
        assert (metrics[0], metrics[1]["Content-Type"]) == (200, METRICS_CONTENT_TYPE)
        assert b"observer_runs_total" in metrics[2]

        (tmp_path / "secret.html").write_text("outside the pages")
        (pages / "run-999999.html").symlink_to(tmp_path / "secret.html")
        (pages / "unit-x-0123456789ab.html").symlink_to(observed.db)
        for target in [
            "/../observer.db", "/%2e%2e/observer.db", "/%2E%2E%2Fobserver.db",
            "/..%2fobserver.db", "/../secret.html", "/%2e%2e%2fsecret.html",
            f"/{observed.db}", f"/%2f{str(observed.db).lstrip('/')}", "//etc/passwd",
            "/index.html%00", "/%00/../observer.db", "/run-999999.html",
            "/unit-x-0123456789ab.html", "/.observer-dashboard.json", "/dashboard/",
            "/%2e%2e/",
        ]:  # fmt: skip
            status, _, body = fetch(port, target)
            assert status in {400, 404}, target
            assert b"outside the pages" not in body, target
            assert b"SQLite format" not in body, target
            assert b"root:" not in body, target
        assert observed.stop() == 0
    finally:
        observed.close()

    rows = overview_rows(overview.dom)
    assert {unit: rows.get(unit) for unit in EXPECTED_HEALTH} == EXPECTED_HEALTH
    assert failed.dom.find_all("script") == []
    assert not [e for e in failed.dom.iter() if e.attrs.get("id") == "injected"]
    output = failed.dom.find("pre", "output").text()
    assert "<script>document.title='pwned'</script>" in output
    assert "\\x1b[31mred alert\\x1b[0m" in output
    assert ESCAPED_INSTANCE in instance.dom.find("h1").text()


def served_health(port: int) -> dict[str, str]:
    status, _, body = fetch(port, "/")
    if status != 200:
        return {}
    rows = overview_rows(parse(body.decode()))
    return {unit: health for unit, health in rows.items() if unit in EXPECTED_HEALTH}


def run_units(sandbox: Sandbox) -> None:
    script = sandbox.root / "usr/local/bin/leaky"
    script.write_text(LEAKY_SCRIPT)
    script.chmod(0o755)
    sandbox.write_unit("leaky.service", oneshot("/usr/local/bin/leaky"))
    sandbox.write_unit("backup.service", oneshot("/bin/echo copied"))
    sandbox.write_unit("backup@.service", oneshot("/bin/echo backing up %f"))
    sandbox.write_unit("renew.service", oneshot("/bin/echo renewed"))
    sandbox.write_unit(
        "renew.timer", "[Timer]\nOnActiveSec=1\nOnUnitActiveSec=1h\nAccuracySec=1ms\n"
    )
    sandbox.write_unit("worker.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    sandbox.daemon_reload()
    sandbox.start("worker.service", wait=False)
    instance = sandbox.run(
        "systemd-escape", "--template=backup@.service", "--path", "/home/user/My Files"
    ).stdout.strip()
    assert instance == ESCAPED_INSTANCE
    sandbox.start(instance)
    sandbox.start("backup.service")
    sandbox.start("leaky.service", wait=False)
    sandbox.systemctl("start", "renew.timer")


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def written_health(pages: Path) -> dict[str, str]:
    """The health the overview on disk shows for the units this test runs."""
    rows = overview_rows(parse(text_of(pages / "index.html")))
    return {unit: health for unit, health in rows.items() if unit in EXPECTED_HEALTH}


def loaded_cleanly(browser: Browser, page: Path | str) -> Loaded:
    loaded = browser.load(page)
    name = page.name if isinstance(page, Path) else page
    assert loaded.console == [], f"{name} logged to the console: {loaded.console}"
    return loaded


def texts(dom: Element, tag: str) -> list[str]:
    return [element.text() for element in dom.find_all(tag)]


def row_cells(dom: Element, unit: str) -> dict[str, str]:
    headers = [th.text().strip().lower() for th in dom.find("thead").find_all("th")]
    [row] = [tr for tr in dom.find_all("tr") if tr.attrs.get("data-unit") == unit]
    return dict(zip(headers, [td.text().strip() for td in row.find_all("td")], strict=True))
