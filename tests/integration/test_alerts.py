"""Alerts from the real daemon about a real systemd, delivered through apprise to a real HTTP
receiver on loopback (``json://127.0.0.1:PORT/``)."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from observer.alerts.secrets import redact
from tests.integration.observed import ObserverDaemon
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

# Past the missed grace (3 s) after a few firings of a 2 s timer.
SETTLE_SECONDS = 6


def alert_config(*urls: str, extra: str = "") -> str:
    listed = ", ".join(f'"{url}"' for url in urls)
    return (
        f'[metrics]\nlisten = ""\n[alerts]\nurls = [{listed}]\ncheck_interval = "1s"\n'
        f'retry_delay = "1s"\nmissed_grace = "3s"\n{extra}'
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def oneshot(command: str, extra: str = "") -> str:
    return f"[Unit]\n{extra}[Service]\nType=oneshot\nExecStart=/bin/sh -c '{command}'\n"


def switchable(sandbox: Sandbox, unit: str) -> Path:
    """A unit that fails while its flag file exists inside the sandbox, else succeeds."""
    flag = f"/run/{unit}.fail"
    sandbox.write_unit(unit, oneshot(f"echo checking {unit}; test ! -e {flag} || exit 4"))
    return sandbox.root / flag.lstrip("/")


def titles(receiver: Receiver) -> list[str]:
    return [str(post["title"]) for post in receiver.posts()]


def alert_state(db: Path, unit: str) -> dict[str, Any] | None:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM alert_state WHERE unit = ?", (unit,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return None if row is None else dict(row)


def test_two_failures_alert_once_a_success_recovers_once_and_one_failure_alerts_nobody(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=alert_config(receiver.json_url), debug=True)
    try:
        daemon.start()
        backup_fails = switchable(sandbox, "backup.service")
        flaky_fails = switchable(sandbox, "flaky.service")
        sandbox.daemon_reload()
        backup_fails.touch()
        flaky_fails.touch()
        sandbox.start("backup.service")
        sandbox.start("flaky.service")
        flaky_fails.unlink()
        sandbox.start("flaky.service")
        sandbox.start("backup.service")

        receiver.wait_for(1)
        host = daemon.json("runs", "--unit", "backup")[0]["host"]
        assert titles(receiver) == [f"[{host}] backup.service failed 2 times in a row (exit-code)"]
        body = str(receiver.posts()[0]["message"])
        runs = daemon.finished_runs("backup", 2)
        assert f"backup.service on {host} failed 2 times in a row (exit-code)." in body
        assert "Exit status: 4" in body
        assert "checking backup.service" in body
        assert body.endswith(f"Full run: observer show {runs[0]['id']}")

        backup_fails.unlink()
        sandbox.start("backup.service")
        receiver.wait_for(2)
        daemon.finished_runs("backup", 3)
        daemon.finished_runs("flaky", 2)
        daemon.alerts_checked()
        assert titles(receiver) == [
            f"[{host}] backup.service failed 2 times in a row (exit-code)",
            f"[{host}] backup.service succeeded again after 2 failed runs",
        ]
        assert receiver.posts()[1]["type"] == "success"
        listed = daemon.json("alerts")
        assert [(a["unit"], a["kind"]) for a in listed] == [
            ("backup.service", "recovered"),
            ("backup.service", "failing"),
        ]
        assert all(a["deliveries"][0]["status"] == "sent" for a in listed)
        assert len(daemon.finished_runs("flaky", 2)) == 2
    finally:
        daemon.close()


def test_an_alert_fires_once_when_the_daemon_restarts_between_two_failures(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=alert_config(receiver.json_url), debug=True)
    try:
        daemon.start()
        switchable(sandbox, "sync.service").touch()
        sandbox.daemon_reload()
        sandbox.start("sync.service")
        wait_for(
            lambda: (alert_state(daemon.db, "sync.service") or {}).get("failures") == 1,
            timeout=30,
            what="the first failure to be counted",
        )
        assert daemon.stop() == 0

        sandbox.start("sync.service")  # fails while no daemon watches: the journal keeps it
        daemon.start()

        receiver.wait_for(1)
        daemon.finished_runs("sync", 2)
        daemon.alerts_checked()
        assert [t.split("] ", 1)[1] for t in titles(receiver)] == [
            "sync.service failed 2 times in a row (exit-code)"
        ]
        assert len(daemon.finished_runs("sync", 2)) == 2
    finally:
        daemon.close()


def test_a_timer_whose_service_is_skipped_by_its_condition_records_skips_and_alerts_nobody(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=alert_config(receiver.json_url), debug=True)
    try:
        daemon.start()
        timer = "[Timer]\nOnActiveSec=1\nOnUnitActiveSec=2\nAccuracySec=1ms\n"
        # systemd fires the timer, then skips the service: a run of its own (result
        # `condition`), neither a failure nor a missed run.
        sandbox.write_unit("report.service", oneshot("echo report", "ConditionPathExists=/nope\n"))
        sandbox.write_unit("report.timer", timer)
        sandbox.write_unit("tick.service", oneshot("echo tick"))
        sandbox.write_unit("tick.timer", timer)
        sandbox.daemon_reload()
        sandbox.systemctl("start", "report.timer", "tick.timer")

        skipped = daemon.finished_runs("report", 3)
        daemon.finished_runs("tick", 3)
        # The timer keeps firing, the service keeps being skipped: a check as of the end of
        # the missed grace after a few more firings would have made a missed alert.
        daemon.alerts_checked(as_of_usec=time.time_ns() // 1000 + SETTLE_SECONDS * 1_000_000)
        assert receiver.posts() == []
        assert {(r["result"], r["reason"]) for r in skipped} == {
            ("condition", "ConditionPathExists=/nope")
        }
        assert daemon.json("alerts") == []
    finally:
        daemon.close()


def test_a_channel_answering_500_or_hanging_is_retried_while_runs_are_recorded_on_time(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    with Receiver(status=500) as broken, Receiver(hang_seconds=60) as hanging:
        # apprise would give up reading after 4 s (rto): let observer's own limit act first.
        hanging_url = f"{hanging.json_url}?rto=60"
        hung_name, failed_name = redact(hanging_url), redact(broken.json_url)
        config = alert_config(
            broken.json_url, hanging_url, extra='send_timeout = "15s"\nmax_attempts = 3\n'
        )
        daemon = ObserverDaemon(sandbox, tmp_path, config=config)
        try:
            daemon.start()
            switchable(sandbox, "backup.service").touch()
            sandbox.write_unit("quick.service", oneshot("echo quick"))
            sandbox.daemon_reload()
            sandbox.start("backup.service")
            sandbox.start("backup.service")
            hanging.wait_for(1)

            # The hanging channel holds its first attempt for 15 s: runs are recorded meanwhile.
            for _ in range(3):
                sandbox.start("quick.service")
            daemon.finished_runs("quick", 3)
            [alert] = daemon.json("alerts")
            by_channel = {d["channel"]: d for d in alert["deliveries"]}
            assert by_channel[hung_name]["attempts"] == []

            def retried() -> dict[str, Any] | None:
                [alert] = daemon.json("alerts")
                deliveries = {d["channel"]: d for d in alert["deliveries"]}
                hung, failed = deliveries[hung_name], deliveries[failed_name]
                done = hung["attempts"] and failed["status"] == "failed"
                return deliveries if done else None

            deliveries = wait_for(retried, timeout=60, what="the attempts to be recorded")
            failed = deliveries[failed_name]
            assert len(failed["attempts"]) == 3
            assert all("500" in a["error"] for a in failed["attempts"])
            assert len(broken.posts()) == 3
            hung = deliveries[hung_name]
            # It may still deliver: not tried again while its attempt runs (no doubled alert).
            unknown = (
                "no answer within 15.0s: outcome unknown, not tried again while the attempt runs"
            )
            assert hung["attempts"][0]["error"] == unknown
            assert hung["status"] == "pending"
            assert hung["next_attempt_at"] is not None
            assert f"to {hung_name}: {unknown}" in daemon.log()
            assert len(hanging.posts()) == 1
            assert daemon.stop() == 0
        finally:
            daemon.close()


def test_observer_alerts_test_reads_its_urls_from_a_systemd_credential(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    # systemd makes / shared when it boots a machine, not in a container: its credentials
    # (mounted in a namespace of their own, then moved) need it. Inside the sandbox only.
    sandbox.run("mount", "--make-rshared", "/")
    # As docs/alerts.md sets it up: a root-only file, handed over by LoadCredential=.
    etc = sandbox.root / "etc/observer"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "alert-urls").write_text(f"# on-call\n{receiver.json_url}\n")
    (etc / "alert-urls").chmod(0o600)
    (etc / "observer.toml").write_text('[alerts]\nurls_credential = "observer-alerts"\n')
    observer = Path(sys.executable).parent / "observer"
    result = sandbox.run(
        "systemd-run", "--pipe", "--wait", "--quiet",
        "-p", "LoadCredential=observer-alerts:/etc/observer/alert-urls",
        str(observer), "alerts", "test", "--config", "/etc/observer/observer.toml",
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"json://127.0.0.1:{receiver.port}  sent" in result.stdout
    [post] = receiver.posts()
    assert str(post["title"]).endswith("observer test notification")

    outside = sandbox.run(
        str(observer), "alerts", "test", "--config", "/etc/observer/observer.toml", check=False
    )
    assert outside.returncode == 1
    assert "$CREDENTIALS_DIRECTORY is not set" in outside.stderr
