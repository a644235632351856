"""What defined each run, recorded by the real daemon from a real systemd: a drop-in added
between two runs shows in `show`, in `diff`, and in the alert for the failure that follows."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.test_alerts import receiver
from tests.integration.test_findings import alert_config
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the fixture, shared with test_alerts

DROPIN = "/etc/systemd/system/backup.service.d/fail.conf"
DROPIN_TEXT = "[Service]\nExecStart=\nExecStart=/bin/sh -c 'echo disk full; exit 3'\n"


def test_a_drop_in_added_before_a_failure_shows_in_show_diff_and_the_alert(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    units = '[alerts.units."backup.service"]\nfailures = 1\n'
    daemon = ObserverDaemon(sandbox, tmp_path, config=alert_config(receiver.json_url, units))
    try:
        daemon.start()
        sandbox.write_unit("backup.service", oneshot("echo backing up"))
        sandbox.daemon_reload()
        sandbox.start("backup.service")
        [first] = daemon.finished_runs("backup.service", 1)
        wait_for(
            lambda: daemon.json("show", str(first["id"]))["definition"],
            timeout=20, what="the first run's definition",
        )  # fmt: skip
        sandbox.write_unit("fail.conf", DROPIN_TEXT, directory=str(Path(DROPIN).parent))
        sandbox.daemon_reload()
        sandbox.start("backup.service")
        second = daemon.finished_runs("backup.service", 2)[0]
        assert second["result"] == "exit-code"

        shown = wait_for(
            lambda: daemon.json("show", str(second["id"]))["definition"],
            timeout=20, what="the second run's definition",
        )  # fmt: skip
        assert f"drop-in added: {DROPIN}" in shown["changes"]
        assert "command changed" in shown["changes"]
        text = daemon.cli("show", str(second["id"])).stdout
        assert f"Changed:     drop-in added: {DROPIN}" in text
        history = daemon.cli("history", "backup.service").stdout
        assert f"{second['id']}*" in history.split()

        diff = daemon.cli("diff", str(first["id"]), str(second["id"])).stdout
        assert f"+++ run {second['id']}: {DROPIN}" in diff
        assert "+ExecStart=/bin/sh -c 'echo disk full; exit 3'" in diff
        assert "+/bin/sh -c 'echo disk full; exit 3'" in diff  # the command's own diff

        [alert] = wait_for(lambda: receiver.posts() or None, timeout=30, what="the alert")
        body = str(alert["message"])
        print(body)  # for docs/alerts.md
        assert "First failure since backup.service's drop-in and command changed at" in body
        assert f"  drop-in added: {DROPIN}" in body
    finally:
        daemon.close()


def test_runs_of_an_unchanged_unit_share_one_definition_and_mark_no_change(
    sandbox: Sandbox, observed: ObserverDaemon
) -> None:
    sandbox.write_unit("tick.service", oneshot("true"))
    sandbox.daemon_reload()
    for _ in range(3):
        sandbox.start("tick.service")
    runs = observed.finished_runs("tick.service", 3)
    for run_id in (str(r["id"]) for r in runs):
        wait_for(
            partial(lambda rid: observed.json("show", rid)["definition"], run_id),
            timeout=20, what=f"run {run_id}'s definition",
        )  # fmt: skip
    digests = {observed.json("show", str(r["id"]))["definition"]["digest"] for r in runs}
    assert len(digests) == 1
    assert [r["definition_changed"] for r in observed.history("tick.service")] == [False] * 3
