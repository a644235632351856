"""The database's own faults under the running daemon: its filesystem full, the file deleted,
a page overwritten with garbage, the file truncated. Each ends with every run that PID 1's
journal records recorded exactly once, and observer having said what happened."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observed import ObserverDaemon
from tests.integration.prometheus import http_get
from tests.sandbox import Sandbox
from tests.waiting import settled, wait_for

pytestmark = pytest.mark.integration

WAL = ("-wal", "-shm")
METRICS = '[metrics]\nlisten = "127.0.0.1:0"\n'
# A failed run keeps up to 1 MiB of output: each of these needs the database to grow.
BIG_FAILURE = """\
#!/bin/sh
echo "big $INVOCATION_ID"
head -c 300000 /dev/zero | tr '\\0' x | fold -w 100
exit 1
"""


def install_script(sandbox: Sandbox, name: str, text: str) -> str:
    path = sandbox.root / "usr/local/bin" / name
    path.write_text(text)
    path.chmod(0o755)
    return f"/usr/local/bin/{name}"


def pid1_invocations(sandbox: Sandbox, prefix: str) -> dict[str, set[str]]:
    """Unit -> the invocation IDs PID 1's journal records give it, for units named ``prefix*``."""
    found: dict[str, set[str]] = {}
    for line in sandbox.journal("_PID=1", "-o", "json").splitlines():
        entry = json.loads(line)
        unit, invocation_id = entry.get("UNIT"), entry.get("INVOCATION_ID")
        if isinstance(unit, str) and unit.startswith(prefix) and isinstance(invocation_id, str):
            found.setdefault(unit, set()).add(invocation_id)
    return found


def recorded(daemon: ObserverDaemon, prefix: str) -> list[tuple[str, str]]:
    """(unit, invocation ID) of each finished run recorded of units named ``prefix*`` (none
    while the database is gone and not yet rebuilt)."""
    found = daemon.cli("runs", "--unit", f"{prefix}*", "--since", "1h", "--json", check=False)
    if found.returncode != 0 and "database" in found.stderr:
        return []
    return sorted(
        (run["unit"], run["invocation_id"])
        for run in json.loads(found.stdout)
        if run["finished_at"] is not None
    )


def each_once(invocations: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((unit, iid) for unit, iids in invocations.items() for iid in iids)


def assert_every_run_recorded_once(
    sandbox: Sandbox, daemon: ObserverDaemon, prefix: str, count: int, timeout: float = 90
) -> None:
    expected = pid1_invocations(sandbox, prefix)
    assert len(each_once(expected)) == count, expected
    runs = settled(
        lambda: recorded(daemon, prefix), lambda seen: seen == each_once(expected), timeout=timeout
    )
    assert runs == each_once(expected), daemon.log()
    with contextlib.closing(sqlite3.connect(daemon.db)) as conn:
        twice = conn.execute(
            "SELECT invocation_id FROM runs WHERE invocation_id IS NOT NULL "
            "GROUP BY invocation_id HAVING count(*) > 1"
        ).fetchall()
    assert twice == []


def run_units(sandbox: Sandbox, prefix: str, count: int, script: str = "/bin/true") -> None:
    for i in range(count):
        sandbox.systemd_run(script, unit=f"{prefix}{i}", service_type="oneshot", wait=True)


def metric(daemon: ObserverDaemon, name: str) -> float:
    url = wait_for(
        lambda: re.search(r"serving metrics on (http://127\.0\.0\.1:\d+/metrics)", daemon.log()),
        timeout=30,
        what="the daemon to serve metrics",
    ).group(1)
    found = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", http_get(url), re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))


def stored_cursor_usec(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        [cursor] = conn.execute("SELECT value FROM state WHERE key = 'journal_cursor'").fetchone()
    return int(re.search(r"t=([0-9a-f]+)", cursor).group(1), 16)  # type: ignore[union-attr]


def pid1_finished_usec(sandbox: Sandbox, invocation_ids: set[str]) -> list[int]:
    """When PID 1 wrote the records of these invocations."""
    times = []
    for line in sandbox.journal("_PID=1", "-o", "json").splitlines():
        entry = json.loads(line)
        if entry.get("INVOCATION_ID") in invocation_ids:
            times.append(int(entry["__REALTIME_TIMESTAMP"]))
    return times


# -- the database's filesystem full --------------------------------------------------------


def test_a_full_filesystem_holds_the_cursor_says_so_and_the_daemon_catches_up_when_space_returns(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # A small filesystem of its own for the database, here (SQLite resolves the sandbox's
    # /proc/PID/root to the host's /), unmounted after the test.
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True)
    daemon = ObserverDaemon(sandbox, tmp_path, config=METRICS)
    daemon.db = small / "observer.db"
    big = install_script(sandbox, "big-failure", BIG_FAILURE)
    try:
        daemon.start()
        run_units(sandbox, "before-full-", 3)
        assert_every_run_recorded_once(sandbox, daemon, "before-full-", 3)
        assert metric(daemon, "observer_store_writable") == 1.0

        fill(small / "filler")
        run_units(sandbox, "while-full-", 8, big)
        wait_for(
            lambda: metric(daemon, "observer_store_writable") == 0.0,
            timeout=60,
            what="the daemon to find the database's filesystem full",
        )
        assert "database or disk is full (kept in memory, retrying)" in daemon.log()
        assert metric(daemon, "observer_store_errors_total") >= 1
        status = daemon.cli("status")
        assert "is full" in status.stderr, status.stderr
        # The cursor stays before every run it could not store: none is skipped.
        unstored = {iid for _, iid in each_once(pid1_invocations(sandbox, "while-full-"))}
        unstored -= {iid for _, iid in recorded(daemon, "while-full-")}
        assert unstored, "every run was stored: the filesystem was not full"
        assert stored_cursor_usec(daemon.db) < min(pid1_finished_usec(sandbox, unstored))

        (small / "filler").unlink()
        assert_every_run_recorded_once(sandbox, daemon, "while-full-", 8)
        assert_every_run_recorded_once(sandbox, daemon, "before-full-", 3)
        wait_for(
            lambda: metric(daemon, "observer_store_writable") == 1.0,
            timeout=30,
            what="the metrics to say the database takes writes again",
        )
        assert "the database takes writes again" in daemon.log()
        assert "is full" not in daemon.cli("status").stderr
    finally:
        daemon.close()
        subprocess.run(["umount", str(small)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem has no space left."""
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(block)


# -- the database deleted or corrupted under the daemon ------------------------------------


def delete(db: Path) -> None:
    db.unlink()


def garbage_over_its_first_page(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(os.urandom(4096))


def truncate_to_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (delete, "was deleted"),
        (garbage_over_its_first_page, "is corrupt: its header is not SQLite's"),
        (truncate_to_half, "is corrupt: it holds"),
    ],
)
def test_a_database_lost_under_the_daemon_is_rebuilt_from_the_journal(
    sandbox: Sandbox, tmp_path: Path, fault: Callable[[Path], None], said: str
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path, config=METRICS)
    try:
        daemon.start()
        run_units(sandbox, "before-lost-", 3)
        assert_every_run_recorded_once(sandbox, daemon, "before-lost-", 3)

        fault(daemon.db)
        run_units(sandbox, "after-lost-", 3)

        assert_every_run_recorded_once(sandbox, daemon, "after-lost-", 3)
        assert_every_run_recorded_once(sandbox, daemon, "before-lost-", 3)
        assert f"{daemon.db}' {said}" in daemon.log()
        assert "rebuilding the database from the journal" in daemon.log()
        corrupt = [p for p in tmp_path.glob("observer.db.corrupt-*") if p.name[-4:] not in WAL]
        assert len(corrupt) == (0 if fault is delete else 1)
        if corrupt:
            assert f"moved the corrupt database to {corrupt[0]}" in daemon.log()
        status = daemon.cli("status")
        assert "the database was rebuilt from the journal at " in status.stderr
        assert said in status.stderr
        assert metric(daemon, "observer_store_writable") == 1.0
        # Runs the rebuild found again are not announced (alerts, metrics) again.
        for unit, _ in recorded(daemon, "before-lost-"):
            assert daemon.log().count(f"recorded {unit} ") == 1, unit
    finally:
        daemon.close()


def test_a_database_lost_while_nothing_runs_is_found_without_a_write(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    daemon = ObserverDaemon(sandbox, tmp_path)
    try:
        daemon.start()
        run_units(sandbox, "quiet-", 2)
        assert_every_run_recorded_once(sandbox, daemon, "quiet-", 2)

        daemon.db.unlink()

        wait_for(daemon.db.exists, timeout=30, what="a new database at the path")
        assert_every_run_recorded_once(sandbox, daemon, "quiet-", 2)
        history: list[dict[str, Any]] = daemon.history("quiet-0.service")
        assert len(history) == 1
    finally:
        daemon.close()
