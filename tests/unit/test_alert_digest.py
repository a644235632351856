"""The daily digest: when it is due (fixed clocks), what it says, sent once a day even
across restarts (the day is kept in the store)."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from datetime import time as clock
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.alert_config import AlertsConfig, parse_clock
from observer.alerts import digest
from observer.alerts.message import compose
from observer.alerts.secrets import Channel
from observer.alerts.state import AlertLedger, StoredAlert
from observer.model import Run, Source
from observer.store import database
from tests.unit.recorded_runs import HOUR, MINUTE, NOW_USEC, SECOND, invocation

pytestmark = pytest.mark.usefixtures("utc")
CHANNEL = Channel.of("json://127.0.0.1:9/hook")
# NOW_USEC is 2026-11-23 15:00 UTC.


def test_the_digest_is_due_from_its_time_until_the_day_ends_once() -> None:
    at = parse_clock("08:00")
    day = date(2026, 12, 2)
    assert digest.due_day(at, None, datetime(2026, 12, 2, 7, 59)) is None
    assert digest.due_day(at, None, datetime(2026, 12, 2, 8, 0)) == day
    assert digest.due_day(at, date(2026, 12, 1), datetime(2026, 12, 2, 23, 59)) == day
    assert digest.due_day(at, day, datetime(2026, 12, 2, 8, 1)) is None
    assert digest.due_day(at, day, datetime(2026, 12, 3, 8, 0)) == date(2026, 12, 3)


@given(st.datetimes(), st.integers(0, 23), st.integers(0, 59))
def test_a_digest_that_was_sent_is_not_due_again_that_day(
    now: datetime, hour: int, minute: int
) -> None:
    at = clock(hour, minute)
    due = digest.due_day(at, None, now)
    assert (due is not None) == (now.time() >= at)
    if due is not None:
        assert digest.due_day(at, due, now) is None
        assert due == now.date()


@pytest.mark.parametrize("text", ["8:00", "24:00", "08:60", "8am", ""])
def test_a_bad_time_of_day_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock(text)


def record(conn: sqlite3.Connection, n: int, unit: str, at: int, ok: bool, seconds: float) -> None:
    run = Run(
        unit=unit, invocation_id=invocation(n), host="h", source=Source.BUS,
        started_usec=at - int(seconds * SECOND), finished_usec=at,
        result="success" if ok else "exit-code",
    )  # fmt: skip
    database.write_batch(conn, database.Batch(runs=[run]))


def test_the_digest_is_recorded_once_a_day_even_across_restarts_and_says_the_day(
    tmp_path: Path,
) -> None:
    conn = database.open_for_writing(tmp_path / "observer.db")
    conn.row_factory = sqlite3.Row
    config = AlertsConfig(present=True)._replace(digest_at="16:00")
    record(conn, 1, "backup.service", NOW_USEC - 30 * HOUR, True, 60)  # before the 24 hours
    record(conn, 2, "backup.service", NOW_USEC + 10 * MINUTE, True, 125)
    record(conn, 3, "backup.service", NOW_USEC + 20 * MINUTE, False, 2)
    record(conn, 4, "sync.service", NOW_USEC + 30 * MINUTE, True, 3)

    def book() -> AlertLedger:  # a daemon (re)started
        ledger = AlertLedger(conn, config, lambda unit: [CHANNEL])
        ledger.since(NOW_USEC)
        return ledger

    assert book().digest(NOW_USEC + 59 * MINUTE) == []  # 15:59
    [alert] = book().digest(NOW_USEC + HOUR)
    assert alert.summary == (
        "daily digest: 3 runs, 1 failed, 0 with findings, 0 units with open problems"
    )
    assert book().digest(NOW_USEC + HOUR + MINUTE) == []
    assert book().check(NOW_USEC + 8 * HOUR) == []  # 23:00, same day
    [tomorrow] = [a for a in book().check(NOW_USEC + 25 * HOUR) if a.kind == "digest"]
    [row] = conn.execute(
        "SELECT id, created_usec, unit, kind, summary, run_id FROM alerts ORDER BY id LIMIT 1"
    ).fetchall()
    message = compose(conn, StoredAlert(*row), "vm", 20)
    assert message.title == (
        "[vm] daily digest: 3 runs, 1 failed, 0 with findings, 0 units with open problems"
    )
    assert message.body == (
        "observer on vm: the 24 hours to 2026-11-23 16:00:00 UTC.\n"
        "\n"
        "UNIT            RUNS  FAILED  FINDINGS\n"
        "backup.service     2       1         0\n"
        "sync.service       1       0         0\n"
        "\n"
        "Open problems:\n"
        "  none\n"
        "\n"
        "Slowest (the longest run of each):\n"
        "  backup.service  2m05s\n"
        "  sync.service    3.0s\n"
        "\n"
        "Most changed (the median duration of 7 days against the 30 before):\n"
        "  none"
    )
    assert tomorrow.summary.startswith("daily digest: 0 runs")
