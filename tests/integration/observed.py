"""The real observer daemon and CLI, run as processes against a sandboxed systemd."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

from observer.alerts import outbox
from observer.alerts.service import OUTPUT_SETTLE_SECONDS
from tests.sandbox import Sandbox
from tests.waiting import wait_for

T = TypeVar("T")


def observer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "observer", *args]


class ObserverDaemon:
    """`observer daemon` pointed at a sandbox's bus and journal, with its log in a file."""

    def __init__(
        self, sandbox: Sandbox, workdir: Path, config: str | None = None, debug: bool = False
    ) -> None:
        self.sandbox = sandbox
        self.debug = debug  # its log then tells each pass of the alert checks
        self.db = workdir / "observer.db"
        self.log_path = workdir / "daemon.log"
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = workdir / "observer.toml"
            self.config_path.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.fences = 0

    def start(self, wait_ready: bool = True) -> None:
        config = self.config_path.read_text() if self.config_path is not None else None
        args = [
            "daemon",
            "--db", str(self.db),
            "--bus-address", self.sandbox.bus_address,
            "--journal-dir", str(self.sandbox.journal_dir),
            "--passwd", str(self.sandbox.root / "etc/passwd"),
            "--journal-socket", str(self.sandbox.root / "run/systemd/journal/socket"),
            "--root", str(self.sandbox.root),
        ]  # fmt: skip
        if config is None or "listen" not in config:
            args += ["--listen", ""]  # no fixed port: tests that want metrics configure it
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        args += ["--debug"] if self.debug else []
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                observer_cmd(*args), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        if wait_ready:
            marker = "observer daemon ready"
            wait_for(
                lambda: self.log().split(f"--- start {self.starts}\n")[-1].count(marker) > 0,
                timeout=30,
                what=f"the daemon to be ready (log: {self.log_path})",
                check=self._alive,
            )

    def _alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.process.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM and wait: the daemon writes what it holds and exits 0."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: nothing is flushed."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, OBSERVER_DB=str(self.db))
        result = subprocess.run(
            observer_cmd(*args), capture_output=True, text=True, env=env, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"observer {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def history(self, unit: str, n: int = 1000) -> list[dict[str, Any]]:
        result = self.cli("history", unit, "-n", str(n), "--json", check=False)
        if result.returncode == 1 and "no runs recorded" in result.stderr:
            return []
        if result.returncode != 0:
            raise AssertionError(result.stderr)
        runs: list[dict[str, Any]] = json.loads(result.stdout)
        return runs

    def runs(self, unit_glob: str, since: str = "1h") -> list[dict[str, Any]]:
        """`observer runs --unit GLOB --since SPAN --json`: newest first."""
        runs: list[dict[str, Any]] = self.json("runs", "--unit", unit_glob, "--since", since)
        return runs

    def finished_runs(self, unit: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until ``count`` finished runs of ``unit`` are readable; newest first."""

        def ready() -> list[dict[str, Any]] | None:
            runs = [r for r in self.history(unit) if r["finished_at"] is not None]
            return runs if len(runs) >= count else None

        return wait_for(ready, timeout=timeout, what=f"{count} runs of {unit}", check=self._alive)

    def alerts_checked(self, as_of_usec: int | None = None, timeout: float = 60) -> None:
        """Wait until the alert checks have judged every run recorded by now, made what time
        alone makes by ``as_of_usec`` (default: now), and sent, failed or held every alert
        made by then. An alert wrongly made would have come by then: a test then asserts that
        none did. Needs ``debug=True``."""
        assert self.debug, "the alert checks' passes are logged at debug level"
        self.fences += 1
        fence = f"alerts-fence-{self.fences}"
        self.sandbox.systemd_run("/bin/true", unit=fence, wait=True)
        self.finished_runs(fence, 1)  # the runs that ended before it are recorded too
        settled = max(as_of_usec or 0, time.time_ns() // 1000) + int(OUTPUT_SETTLE_SECONDS * 1e6)

        def checked() -> bool:
            this_start = self.log().split(f"--- start {self.starts}\n")[-1]
            passes = re.findall(r"alerts: checked as of (\d+)", this_start)
            return any(int(as_of) >= settled for as_of in passes)

        wait_for(checked, timeout=timeout, what="a pass of the alert checks", check=self._alive)
        wait_for(
            lambda: self.pending_deliveries() == 0, timeout=timeout, what="no pending deliveries"
        )

    def pending_deliveries(self) -> int:
        conn = sqlite3.connect(self.db)
        try:
            query = "SELECT COUNT(*) FROM alert_deliveries WHERE status = ?"
            return int(conn.execute(query, (outbox.PENDING,)).fetchone()[0])
        finally:
            conn.close()

    def wait_trigger(self, run_id: int, trigger: str, timeout: float = 20) -> dict[str, Any]:
        """Wait until a run names ``trigger`` (the bus may tell it after the journal)."""

        def named() -> dict[str, Any] | None:
            shown: dict[str, Any] = self.json("show", str(run_id))
            return shown if shown["trigger"] == trigger else None

        return wait_for(named, timeout=timeout, what=f"run {run_id} to name {trigger}")

    def output(self, run_id: int, lines: int, timeout: float = 20) -> list[str]:
        """Wait until a run shows ``lines`` lines of output (it can trail the run's end)."""

        def enough() -> list[str] | None:
            shown = self.json("show", str(run_id))["output"]
            messages = [str(o["message"]) for o in shown]
            return messages if len(messages) >= lines else None

        return wait_for(enough, timeout=timeout, what=f"{lines} lines of run {run_id}")


def oneshot(command: str, extra: str = "") -> str:
    """A oneshot service running ``command`` in a shell, ``extra`` added to [Service]."""
    return f"[Service]\nType=oneshot\nExecStart=/bin/sh -c '{command}'\n{extra}"
