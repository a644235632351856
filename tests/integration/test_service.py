"""`observer daemon` as a real Type=notify service with a watchdog, inside the sandbox."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

# The host's file system is the sandbox's lower layer: the venv works inside as it is.
OBSERVER = Path(sys.executable).parent / "observer"
DB_INSIDE = "/var/lib/observer/observer.db"
WATCHDOG_SECONDS = 2
OBSERVER_SERVICE = f"""\
[Unit]
Description=Record every run of systemd services

[Service]
Type=notify
ExecStart={OBSERVER} daemon --db {DB_INSIDE}
WatchdogSec={WATCHDOG_SECONDS}
# How the main process ended, as systemd saw it (the unit is unloaded once stopped).
ExecStopPost=/bin/sh -c 'echo "$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS" > /run/observer-stopped'
"""


def properties(sandbox: Sandbox, unit: str, *names: str) -> dict[str, str]:
    shown = sandbox.systemctl("show", unit, *(f"--property={name}" for name in names)).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def history(sandbox: Sandbox, unit: str) -> list[dict[str, Any]]:
    """`observer history UNIT --json --db DB`, run inside; no runs yet is an empty list.

    The CLI runs inside because SQLite cannot open the file from the host: it resolves
    symbolic links itself, and /proc/PID/root reads as "/", so it would open the host's
    /var/lib/observer/observer.db instead.
    """
    result = sandbox.run(str(OBSERVER), "history", unit, "--json", "--db", DB_INSIDE, check=False)
    if result.returncode == 1 and "no runs recorded" in result.stderr:
        return []
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, Any]] = json.loads(result.stdout)
    return runs


def test_observer_runs_as_a_notify_service_that_feeds_its_watchdog_and_stops_cleanly(
    sandbox: Sandbox,
) -> None:
    sandbox.write_unit("observer.service", OBSERVER_SERVICE)
    sandbox.write_unit("hello.service", "[Service]\nType=oneshot\nExecStart=/bin/echo hello\n")
    sandbox.daemon_reload()

    def its_log() -> str:
        return sandbox.journal("-u", "observer.service")

    # For Type=notify, `systemctl start` returns only once the daemon sent READY=1.
    started = sandbox.start("observer.service")
    assert started.returncode == 0, f"{started.stderr}\n{its_log()}"
    first = properties(
        sandbox, "observer.service", "ActiveState", "SubState", "MainPID", "WatchdogUSec",
        "ExecMainStartTimestampMonotonic",
    )  # fmt: skip
    assert (first["ActiveState"], first["SubState"]) == ("active", "running")
    assert first["WatchdogUSec"] == f"{WATCHDOG_SECONDS}s"

    # systemd stamps every WATCHDOG=1 it gets: wait for one sent several intervals after
    # the start. A missed ping would have killed the daemon first.
    several_intervals_later = (
        int(first["ExecMainStartTimestampMonotonic"]) + 4 * WATCHDOG_SECONDS * 1_000_000
    )

    def still_running() -> None:
        now = properties(sandbox, "observer.service", "ActiveState", "MainPID", "NRestarts")
        if now != {"ActiveState": "active", "MainPID": first["MainPID"], "NRestarts": "0"}:
            raise AssertionError(
                f"observer.service stopped being the same process: {now}\n{its_log()}"
            )

    def pinged_late_enough() -> bool:
        watchdog = properties(sandbox, "observer.service", "WatchdogTimestampMonotonic")
        return int(watchdog["WatchdogTimestampMonotonic"]) > several_intervals_later

    wait_for(
        pinged_late_enough,
        timeout=8 * WATCHDOG_SECONDS + 30,
        what="a watchdog ping four intervals after the start",
        check=still_running,
    )
    still_running()

    # The daemon inside records a run, in a database only its owner and group may read.
    assert sandbox.start("hello.service").returncode == 0
    db = sandbox.root / DB_INSIDE.lstrip("/")

    def hello_finished() -> list[dict[str, Any]] | None:
        runs = history(sandbox, "hello")
        return runs if runs and all(run["finished_at"] for run in runs) else None

    [hello] = wait_for(hello_finished, timeout=30, what="hello's run in the service's database")
    assert (hello["unit"], hello["result"], hello["exit_status"]) == ("hello.service", "success", 0)
    assert stat.S_IMODE(db.stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE(db.parent.stat().st_mode) & 0o007 == 0

    sandbox.systemctl("stop", "observer.service")
    assert (sandbox.root / "run/observer-stopped").read_text() == "success exited 0\n", its_log()
    assert sandbox.unit_property("observer.service", "ActiveState") == "inactive"
    assert "Watchdog timeout" not in its_log()
