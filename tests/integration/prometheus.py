"""Real Prometheus and node_exporter processes on loopback, with temporary storage."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from tests.waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str, package: str) -> str:
    """The path of a binary a test needs; skip without it (fail on CI)."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is missing (apt-get install {package}; dev-setup.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def http_get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


class Process:
    """A child process with its output in a file; stopped on exit."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env
            )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.process.args!r} exited with {self.process.returncode}:\n"
                + self.log_path.read_text(errors="replace")[-4000:]
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class Prometheus(Process):
    """A Prometheus scraping ``targets`` every second, never the host's own service."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape: str = "",
        rule_files: Sequence[Path] = (),
    ) -> None:
        """``scrape``: more of the job's settings, as YAML lines indented for the job."""
        binary = need("prometheus", "prometheus")
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: {json.dumps([str(path) for path in rule_files])}\n"
            f"scrape_configs:\n  - job_name: observer\n{scrape}    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        super().__init__(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        )
        wait_for(self._ready, timeout=60, what="Prometheus to be ready", check=self.check)

    def _ready(self) -> bool:
        try:
            http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
        except (urllib.error.URLError, OSError):
            return False
        return True

    def api(self, path: str, **params: str) -> Any:
        """The data of a successful answer of Prometheus's HTTP API."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        document = json.loads(http_get(url))
        assert document["status"] == "success", document
        return document["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query: one item per series."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        document = json.loads(http_get(url))
        assert document["status"] == "success", document
        results: list[dict[str, Any]] = document["data"]["result"]
        return results

    def value(self, promql: str) -> float | None:
        """The value of a query that selects one series, or None while it selects none."""
        results = self.query(promql)
        if not results:
            return None
        assert len(results) == 1, results
        return float(results[0]["value"][1])

    def wait_value(self, promql: str, expected: float, timeout: float = 60) -> None:
        wait_for(
            lambda: self.value(promql) == expected,
            timeout=timeout,
            what=f"{promql} == {expected} in Prometheus (now {self.value(promql)})",
            check=self.check,
        )
