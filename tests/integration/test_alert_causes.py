"""Root causes through the real daemon about a real systemd, told to a real HTTP receiver:
three services that require one failing unit (a service, then a mount) make one alert
naming that unit and the three, and one recovery when it works again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.test_alerts import receiver, titles
from tests.integration.test_findings import alert_config
from tests.receiver import Receiver
from tests.sandbox import Sandbox

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the fixture, shared with test_alerts

DEPENDENTS = ("report-a.service", "report-b.service", "report-c.service")
NAMED = "3 units (report-a.service, report-b.service, report-c.service)"


def write_dependents(sandbox: Sandbox, needed: str) -> None:
    for unit in DEPENDENTS:
        sandbox.write_unit(
            unit, f"[Unit]\nRequires={needed}\nAfter={needed}\n" + oneshot(f"echo {unit}")
        )


def test_three_services_requiring_a_failing_service_make_one_alert_naming_it_and_them(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    # failures = 1: the failed unit's own failing alert is the one folded into it.
    units = '[alerts.units."prepare.service"]\nfailures = 1\n'
    daemon = ObserverDaemon(
        sandbox, tmp_path, config=alert_config(receiver.json_url, units), debug=True
    )
    try:
        daemon.start()
        flag = sandbox.root / "run/prepare.broken"
        flag.touch()
        sandbox.write_unit("prepare.service", oneshot("test ! -e /run/prepare.broken"))
        write_dependents(sandbox, "prepare.service")
        sandbox.daemon_reload()
        assert sandbox.systemctl("start", *DEPENDENTS, check=False).returncode != 0
        receiver.wait_for(1)
        host = daemon.json("runs", "--unit", "prepare")[0]["host"]
        for unit in DEPENDENTS:
            [run] = daemon.finished_runs(unit, 1)
            assert (run["result"], run["reason"]) == ("dependency", "prepare.service")
        daemon.alerts_checked()
        assert titles(receiver) == [
            f"[{host}] prepare.service failed and took down {NAMED}: their starts were refused"
        ]
        body = str(receiver.posts()[0]["message"])
        assert "Result:      exit-code" in body  # the failed unit's own run

        flag.unlink()
        sandbox.start("report-a.service")
        receiver.wait_for(2)
        daemon.alerts_checked()
        # systemctl may start each unit in a transaction of its own: prepare ran for each.
        failed = [r for r in daemon.history("prepare") if r["result"] == "exit-code"]
        runs = f"{len(failed)} failed run{'s' if len(failed) > 1 else ''}"
        assert titles(receiver)[1:] == [
            f"[{host}] prepare.service succeeded again after {runs} that took down {NAMED}"
        ]
        print("\n".join(titles(receiver)), body, sep="\n")  # for docs/alerts.md
    finally:
        daemon.close()


def test_three_services_requiring_a_failing_mount_make_one_alert_naming_it_and_them(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=alert_config(receiver.json_url), debug=True)
    try:
        daemon.start()
        mount = "[Mount]\nWhat=/dev/no-such-disk\nWhere=/mnt/backup\nType=ext4\n"
        sandbox.write_unit("mnt-backup.mount", mount)
        write_dependents(sandbox, "mnt-backup.mount")
        sandbox.daemon_reload()
        assert sandbox.systemctl("start", *DEPENDENTS, check=False).returncode != 0
        receiver.wait_for(1)
        daemon.alerts_checked()
        host = daemon.json("runs", "--unit", "report-a")[0]["host"]
        assert titles(receiver) == [
            f"[{host}] mnt-backup.mount failed and took down {NAMED}: their starts were refused"
        ]
        # The mount works again (a tmpfs, in the sandbox's own mount namespace).
        sandbox.write_unit(
            "mnt-backup.mount", "[Mount]\nWhat=tmpfs\nWhere=/mnt/backup\nType=tmpfs\n"
        )
        sandbox.daemon_reload()
        sandbox.start("report-b.service")
        receiver.wait_for(2)
        daemon.alerts_checked()
        [recovery] = titles(receiver)[1:]
        assert recovery.startswith(
            f"[{host}] mnt-backup.mount works again: report-b.service started at "
        )
        assert recovery.endswith(f"(it had taken down {NAMED})")
        print("\n".join(titles(receiver)), receiver.posts()[0]["message"], sep="\n")
    finally:
        daemon.close()
