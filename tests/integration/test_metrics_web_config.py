"""The metrics listener behind a web configuration file, scraped by a real Prometheus: with
the user's password and the CA it gets samples; without either it is refused (the target is
down: 401, or a TLS error). The daemon is a central observer of an empty fleet directory: it
needs no systemd, and serves its own metrics as any daemon does."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests import waiting
from tests.integration.observed import observer_cmd
from tests.integration.prometheus import Process, Prometheus, free_port

pytestmark = pytest.mark.integration

SETUP = Path(__file__).resolve().parents[2] / "packaging" / "fleet" / "setup.sh"
PASSWORD = "scrape me"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A daemon serving https://127.0.0.1:PORT/metrics to the user prometheus; its CA."""
    ca = tmp_path / "ca"
    for args in (["ca", str(ca)], ["cert", str(ca), "localhost", "127.0.0.1"]):
        subprocess.run(["bash", str(SETUP), *args], check=True, capture_output=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: ca/localhost/cert.pem\n  key_file: ca/localhost/key.pem\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    (tmp_path / "fleet").mkdir()
    port = free_port()
    args = ["daemon", "--db", str(tmp_path / "observer.db"), "--fleet-dir", str(tmp_path / "fleet")]
    argv = observer_cmd(*args, "--listen", f"127.0.0.1:{port}", "--web.config.file", str(web))
    with Process(argv, tmp_path / "daemon.log") as process:
        waiting.wait_for(
            lambda: "serving metrics on https://" in (tmp_path / "daemon.log").read_text(),
            timeout=60, what="the daemon to serve its metrics", check=process.check,
        )  # fmt: skip
        yield port, ca


def scrape_job(tmp_path: Path, password: str | None, ca_file: Path | None) -> str:
    lines = ["    scheme: https\n"]
    if password is not None:
        (tmp_path / "password").write_text(password)
        lines.append(
            f"    basic_auth: {{username: prometheus, password_file: {tmp_path / 'password'}}}\n"
        )
    if ca_file is not None:
        lines.append(f"    tls_config: {{ca_file: {ca_file}}}\n")
    return "".join(lines)


def health(prometheus: Prometheus) -> tuple[float, str]:
    """The target's up and the last scrape's error, as Prometheus says them.

    Prometheus tells a scrape to its targets page before it stores the scrape's ``up``
    sample: the page is read once ``up`` has a value, so both tell of a scrape done."""

    def stored() -> tuple[float] | None:
        up = prometheus.value("up")
        return None if up is None else (up,)  # a tuple: an up of 0 is an answer too

    [up] = waiting.wait_for(
        stored, timeout=60, what="Prometheus to scrape the daemon once", check=prometheus.check
    )
    [target] = [t for t in prometheus_targets(prometheus) if t["lastScrape"][:4] != "0001"]
    return up, target["lastError"]


def prometheus_targets(prometheus: Prometheus) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus.port}/api/v1/targets") as r:
        active: list[dict[str, str]] = json.load(r)["data"]["activeTargets"]
        return active


@pytest.mark.timeout(240)
def test_prometheus_with_the_password_and_the_ca_gets_samples(
    daemon: tuple[int, Path], tmp_path: Path
) -> None:
    port, ca = daemon
    job = scrape_job(tmp_path, PASSWORD, ca / "ca.pem")
    with Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"], job) as prometheus:
        prometheus.wait_value("up", 1)
        waiting.wait_for(
            lambda: prometheus.value("observer_build_info") == 1,
            timeout=60, what="observer_build_info in Prometheus",
        )  # fmt: skip


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("password", "with_ca", "error"),
    [
        (None, True, "401 Unauthorized"),
        ("wrong", True, "401 Unauthorized"),
        (PASSWORD, False, "certificate signed by unknown authority"),
    ],
    ids=["no-password", "wrong-password", "no-ca"],
)
def test_prometheus_without_the_password_or_the_ca_is_refused(
    daemon: tuple[int, Path], tmp_path: Path, password: str | None, with_ca: bool, error: str
) -> None:
    port, ca = daemon
    job = scrape_job(tmp_path, password, ca / "ca.pem" if with_ca else None)
    with Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"], job) as prometheus:
        up, last_error = health(prometheus)
        assert up == 0
        assert error in last_error
        assert prometheus.value("observer_build_info") is None
    # The listener answered the refused scrapes and still answers a good one.
    request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    login = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {login}")
    context = ssl.create_default_context(cafile=str(ca / "ca.pem"))
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        assert b"observer_build_info" in answer.read()
