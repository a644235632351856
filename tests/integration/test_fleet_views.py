"""A central database read by the real daemon's alert service and metrics listener and by
the real CLI: runs of other hosts, written through the store beside the daemon's own."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from observer.model import Run, Source
from observer.store import database
from tests.integration.observed import ObserverDaemon, oneshot
from tests.integration.prometheus import http_get
from tests.receiver import Receiver
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def other_hosts_runs(db: Path) -> None:
    """backup.service failing twice on web2, succeeding on web3, as received runs are stored."""
    now = time.time_ns() // 1000
    runs = [
        Run("backup.service", f"{n:032x}", host, Source.JOURNAL, started_usec=now - n * 1000,
            finished_usec=now - n * 1000 + 500, result=result, exit_code="exited",
            exit_status=0 if result == "success" else 2)
        for n, (host, result) in enumerate(
            [("web2", "exit-code"), ("web2", "exit-code"), ("web3", "success")], start=1
        )
    ]  # fmt: skip
    with closing(database.open_for_writing(db)) as conn:
        database.write_batch(conn, database.Batch(runs=runs))


def test_the_daemon_alerts_and_exports_per_host_and_the_cli_reads_the_fleet(
    sandbox: Sandbox, tmp_path: Path, receiver: Receiver
) -> None:
    config = (
        f'[metrics]\nlisten = "127.0.0.1:0"\n[alerts]\nurls = ["{receiver.json_url}"]\n'
        'check_interval = "1s"\nretry_delay = "1s"\n'
    )
    daemon = ObserverDaemon(sandbox, tmp_path, config=config)
    try:
        daemon.start()
        sandbox.write_unit("backup.service", oneshot("echo backed up"))
        sandbox.daemon_reload()
        sandbox.start("backup.service")
        [local] = daemon.finished_runs("backup", 1)
        here = local["host"]
        other_hosts_runs(daemon.db)

        receiver.wait_for(1)
        assert [post["title"] for post in receiver.posts()] == [
            "[web2] backup.service failed 2 times in a row (exit-code)"
        ]
        assert "backup.service on web2 failed" in str(receiver.posts()[0]["message"])

        found = re.search(r"serving metrics on (http://127\.0\.0\.1:\d+/metrics)", daemon.log())
        assert found is not None
        wanted = [
            'observer_consecutive_failures{host="web2",unit="backup.service",user=""} 2.0',
            'observer_alert_open{host="web2",unit="backup.service",kind="failing"} 1',
        ]
        url = found[1]

        def scraped() -> str | None:  # the alert's state may come a refresh after the runs
            text = http_get(url)
            return text if all(series in text for series in wanted) else None

        text = wait_for(scraped, timeout=30, what="web2's series in /metrics")
        assert f'observer_last_run_success{{host="{here}",unit="backup.service",user=""}} 1.0' in (
            text
        )
        assert 'observer_last_run_success{host="web3",unit="backup.service",user=""} 1.0' in text

        fleet = daemon.cli("fleet", "backup").stdout
        assert fleet.splitlines() == ["backup.service: 2 of 3 hosts ok, 1 failing (web2)"]
        assert daemon.json("fleet", "backup")["units"][0]["failing"] == ["web2"]
        assert "dbus.service: 1 of 1 host ok" in daemon.cli("fleet").stdout.splitlines()
        rows = [line.split()[:3] for line in daemon.cli("status").stdout.splitlines()]
        assert rows[0][:2] == ["HOST", "UNIT"]
        assert sorted(r for r in rows[1:] if r[1] == "backup.service") == sorted(
            [[here, "backup.service", "success"], ["web2", "backup.service", "exit-code"],
             ["web3", "backup.service", "success"]]
        )  # fmt: skip
        [web2] = daemon.json("history", "backup", "--host", "web2", "-n", "1")
        assert (web2["host"], web2["exit_status"]) == ("web2", 2)
    finally:
        daemon.close()
