"""Starts that did not run (a condition, a failed dependency, the start limit) are runs."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_a_start_skipped_by_a_condition_is_a_run_without_invocation_named_by_its_condition(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    # The sandbox is a container to systemd (systemd-detect-virt says container-other),
    # as fstrim.service's ConditionVirtualization=!container sees it.
    sandbox.write_unit(
        "trim.service", "[Unit]\nConditionVirtualization=!container\n" + oneshot("echo trim")
    )
    sandbox.daemon_reload()
    sandbox.start("trim.service")

    [run] = observed.finished_runs("trim", 1)
    assert run["result"] == "condition"
    assert run["reason"] == "ConditionVirtualization=!container"
    assert run["invocation_id"] is None
    assert run["started_at"] == run["finished_at"] is not None
    assert run["trigger"] is None
    shown = observed.cli("show", str(run["id"])).stdout
    assert "Reason:      ConditionVirtualization=!container" in shown
    assert "Result:      condition" in shown
    stats = observed.json("stats", "trim")
    assert (stats["runs"], stats["skipped"], stats["failures"], stats["successes"]) == (1, 1, 0, 0)
    assert stats["success_rate"] is None


def test_a_start_refused_because_a_required_unit_failed_names_that_unit(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("prepare.service", oneshot("exit 3"))
    sandbox.write_unit(
        "report.service",
        "[Unit]\nRequires=prepare.service\nAfter=prepare.service\n" + oneshot("echo report"),
    )
    sandbox.daemon_reload()
    assert sandbox.systemctl("start", "report.service", check=False).returncode != 0

    [run] = observed.finished_runs("report", 1)
    assert (run["result"], run["reason"], run["invocation_id"]) == (
        "dependency",
        "prepare.service",
        None,
    )
    [failed] = observed.finished_runs("prepare", 1)
    assert failed["result"] == "exit-code"
    assert observed.json("stats", "report")["failures"] == 1
    assert observed.json("last-failure", "report")["id"] == run["id"]


def test_a_start_refused_because_a_required_mount_failed_names_the_mount(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit(
        "mnt-backup.mount", "[Mount]\nWhat=/dev/no-such-disk\nWhere=/mnt/backup\nType=ext4\n"
    )
    sandbox.write_unit(
        "backup.service",
        "[Unit]\nRequires=mnt-backup.mount\nAfter=mnt-backup.mount\n" + oneshot("echo backup"),
    )
    sandbox.daemon_reload()
    assert sandbox.systemctl("start", "backup.service", check=False).returncode != 0

    [run] = observed.finished_runs("backup", 1)
    assert (run["result"], run["reason"]) == ("dependency", "mnt-backup.mount")
    assert "Reason:      mnt-backup.mount" in observed.cli("show", str(run["id"])).stdout


def test_a_start_refused_by_the_start_limit_is_a_run_of_its_own(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit(
        "flaky.service", "[Unit]\nStartLimitBurst=2\nStartLimitIntervalSec=1h\n" + oneshot("exit 1")
    )
    sandbox.daemon_reload()
    for _ in range(3):
        sandbox.systemctl("start", "flaky.service", check=False)

    runs = observed.finished_runs("flaky", 3)
    assert [r["result"] for r in runs] == ["start-limit-hit", "exit-code", "exit-code"]
    refused, ran = runs[0], runs[1]
    assert refused["invocation_id"] is None
    assert ran["invocation_id"] is not None
    assert refused["exit_status"] is None
    assert ran["exit_status"] == 1
    # Recorded once, though systemd logged the refusal with the previous run's ID.
    assert len(observed.history("flaky")) == 3
    assert observed.json("stats", "flaky")["failures"] == 3


def test_a_timer_start_skipped_by_a_condition_names_the_timer_and_is_stored_once(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit(
        "sync.service", "[Unit]\nConditionPathExists=/nonexistent\n" + oneshot("echo sync")
    )
    sandbox.write_unit("sync.timer", "[Timer]\nOnActiveSec=1\nAccuracySec=1ms\n")
    sandbox.daemon_reload()
    sandbox.systemctl("start", "sync.timer")

    [run] = observed.finished_runs("sync", 1)
    assert (run["result"], run["reason"]) == ("condition", "ConditionPathExists=/nonexistent")
    observed.wait_trigger(run["id"], "sync.timer")

    # A restarted daemon goes on from its journal cursor: each start is still one run.
    assert observed.stop() == 0
    # Read from the journal alone, a start is the timer's when it came right after it fired.
    wait_for(lambda: _seconds_since(run["started_at"]) > 3, timeout=10, what="a quiet timer")
    sandbox.start("sync.service")
    observed.start()
    runs = observed.finished_runs("sync", 2)
    assert len(runs) == 2
    assert runs[0]["trigger"] is None
    assert runs[1]["trigger"] == "sync.timer"
    assert observed.json("stats", "sync")["skipped"] == 2


def _seconds_since(iso: str) -> float:
    return (datetime.now().astimezone() - datetime.fromisoformat(iso)).total_seconds()
