"""The rules' messages as the real daemon sends them to a real HTTP receiver, about a real
systemd: a run overstaying its limit, a unit that never succeeds (stale), a reminder, a
success faster than its minimum. docs/alerts.md shows what this test received."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.test_alerts import receiver, titles
from tests.integration.test_findings import alert_config
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import settled

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the fixture, shared with test_alerts

UNITS = """
[alerts.units."export.service"]
max_duration = "2s"
[alerts.units."mirror.service"]
failures = 1
reminder_interval = "4s"
[alerts.units."index.service"]
failures = 100
stale_after = "3s"
[alerts.units."dump.service"]
min_duration = "1s"
"""


def test_overdue_stale_reminder_and_fast_messages_as_received(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=alert_config(receiver.json_url, UNITS))
    try:
        daemon.start()
        sandbox.write_unit("export.service", oneshot("sleep 4"))
        sandbox.write_unit("mirror.service", oneshot("echo mirror unreachable; exit 4"))
        sandbox.write_unit("index.service", oneshot("exit 1"))
        sandbox.write_unit("dump.service", oneshot("true"))
        sandbox.daemon_reload()
        sandbox.systemctl("start", "--no-block", "export.service")
        sandbox.systemctl("start", "mirror.service", check=False)
        sandbox.systemctl("start", "index.service", check=False)
        sandbox.start("dump.service")
        # Recorded a moment after systemctl returns: read once it is.
        host = daemon.finished_runs("dump", 1)[0]["host"]
        wanted = ("overdue", "stale", "reminder", "fast", "failing")

        def made_and_told() -> tuple[set[str], int]:
            return {alert["kind"] for alert in daemon.json("alerts")}, len(receiver.posts())

        # Not failing at the deadline: the asserts below say which message is missing.
        settled(
            made_and_told,
            lambda seen: set(wanted) <= seen[0] and seen[1] >= len(wanted),
            timeout=60,
        )
        got = titles(receiver)
        print("\n".join(got))  # for docs/alerts.md
        by_unit = {t.split()[1]: [x for x in got if x.split()[1] == t.split()[1]] for t in got}
        [overdue] = by_unit["export.service"]
        assert overdue.startswith(f"[{host}] export.service has been running for ")
        assert overdue.endswith(", longer than its limit of 2.0s")
        mirror = by_unit["mirror.service"]
        assert mirror[0] == f"[{host}] mirror.service failed (exit-code)"
        assert mirror[1].startswith(
            f"[{host}] mirror.service still failing: 1 failed run in a row (first alert "
        )
        assert by_unit["index.service"][0].startswith(
            f"[{host}] index.service has not succeeded once in "
        )
        assert by_unit["dump.service"][0].startswith(f"[{host}] dump.service succeeded in only ")
        assert by_unit["dump.service"][0].endswith(", less than its minimum of 1.0s")
    finally:
        daemon.close()
