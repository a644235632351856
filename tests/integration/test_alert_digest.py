"""The daily digest through the real daemon: set a minute ahead, a real HTTP receiver gets
it once, and a restarted daemon does not send it again that day."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.test_alerts import receiver, titles
from tests.integration.test_findings import alert_config
from tests.receiver import Receiver
from tests.sandbox import Sandbox

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the fixture, shared with test_alerts


def test_the_digest_arrives_once_at_its_time_and_not_again_after_a_restart(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    # A minute ahead (local time, as the daemon reads digest_at), at least 30 s away, so
    # that the runs below are recorded first.
    due = (datetime.now().astimezone() + timedelta(seconds=90)).replace(second=0, microsecond=0)
    if due.date() != datetime.now().astimezone().date():
        pytest.skip("too close to midnight: the digest would be tomorrow's")
    settings = f'digest_at = "{due:%H:%M}"\n'
    daemon = ObserverDaemon(
        sandbox, tmp_path, config=alert_config(receiver.json_url, settings), debug=True
    )
    try:
        daemon.start()
        sandbox.write_unit("backup.service", oneshot("echo backing up; sleep 1"))
        sandbox.write_unit("sync.service", oneshot("exit 2"))
        sandbox.daemon_reload()
        sandbox.start("backup.service")
        sandbox.systemctl("start", "sync.service", check=False)
        daemon.finished_runs("sync", 1)
        assert titles(receiver) == []
        receiver.wait_for(1, timeout=150)
        assert datetime.now().astimezone() >= due
        host = daemon.json("runs", "--unit", "backup")[0]["host"]
        [title] = titles(receiver)
        assert title.startswith(f"[{host}] daily digest: ")
        assert ", 1 failed, 0 with findings, " in title
        body = str(receiver.posts()[0]["message"])
        assert "\nsync.service " in body
        assert "Slowest (the longest run of each):\n  backup.service " in body
        printed = daemon.cli("digest").stdout
        assert "sync.service" in printed
        print(title, body, printed, sep="\n")  # for docs/alerts.md

        assert daemon.stop() == 0
        daemon.start()
        daemon.alerts_checked()  # its digest pass: today's digest is recorded as sent
        assert len(titles(receiver)) == 1
    finally:
        daemon.close()
