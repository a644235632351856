"""The alert rules applied to a real SQLite store, at fixed times, and what they record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from observer.alert_config import AlertRules, AlertsConfig
from observer.alerts import outbox
from observer.alerts.message import compose
from observer.alerts.rules import AlertKind
from observer.alerts.secrets import Channel
from observer.alerts.state import DELIVERY_DELAY_USEC, AlertLedger
from observer.model import Run, Source, TimerState
from observer.store import database, schema
from tests.unit.recorded_runs import HOUR, MINUTE, NOW_USEC, SECOND, invocation

CHANNEL = Channel.of("json://127.0.0.1:9/hook?token=s3cret")
CONFIG = AlertsConfig(present=True)


pytestmark = pytest.mark.usefixtures("utc")  # tests/unit/conftest.py


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "observer.db"


def connect(db: Path) -> sqlite3.Connection:
    conn = database.open_for_writing(db)
    conn.row_factory = sqlite3.Row
    return conn


def ledger(conn: sqlite3.Connection, config: AlertsConfig = CONFIG) -> AlertLedger:
    """A ledger whose alerting started at NOW_USEC (unless it started earlier)."""
    book = AlertLedger(conn, config, lambda unit: [CHANNEL])
    book.since(NOW_USEC)
    return book


def record(
    conn: sqlite3.Connection, n: int, ok: bool, at: int, unit: str = "backup.service"
) -> Run:
    run = Run(
        unit=unit, invocation_id=invocation(n), host="host1", source=Source.BUS,
        started_usec=at - 2 * SECOND, finished_usec=at, result="success" if ok else "exit-code",
        exit_code="exited", exit_status=0 if ok else 3, trigger="backup.timer",
    )  # fmt: skip
    database.write_batch(conn, database.Batch(runs=[run]))
    return run


def kinds(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute("SELECT unit, kind FROM alerts ORDER BY id")]


def test_two_failures_make_one_alert_with_a_pending_delivery_to_each_channel(db: Path) -> None:
    conn = connect(db)
    book = ledger(conn)
    record(conn, 1, False, NOW_USEC + MINUTE)
    assert book.judge_runs(NOW_USEC + MINUTE, ["backup.service"]) == []
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    [alert] = book.judge_runs(NOW_USEC + 2 * MINUTE, ["backup.service"])

    assert (alert.kind, alert.summary) == (AlertKind.FAILING, "failed 2 times in a row (exit-code)")
    [due] = outbox.due_deliveries(conn, NOW_USEC + 2 * MINUTE + DELIVERY_DELAY_USEC)
    assert (due.channel, due.channel_key, due.attempts) == ("json://127.0.0.1:9/…", CHANNEL.key, 0)
    assert due.alert.run_id == 2


def test_a_run_is_not_judged_while_a_line_of_its_host_stamped_just_after_it_waits(
    db: Path,
) -> None:
    conn = connect(db)
    book = AlertLedger(conn, CONFIG, lambda unit: [CHANNEL], settle_usec=2 * SECOND)
    book.since(NOW_USEC)
    record(conn, 1, False, NOW_USEC + MINUTE)
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    # A line of host1 read a second after the second failure is not stored yet: perhaps it
    # is that run's (a finding could change its verdict), so that run waits, by any clock.
    waiting = {"host1": NOW_USEC + 2 * MINUTE + SECOND}
    assert book.check(NOW_USEC + HOUR, waiting) == []
    assert book.judge_runs(NOW_USEC + HOUR, ["backup.service"], waiting) == []
    # Another host's line holds nothing back; nor one stamped the settling time after.
    for held in ({"host2": NOW_USEC}, {"host1": NOW_USEC + 2 * MINUTE + 2 * SECOND}):
        book = AlertLedger(conn, CONFIG, lambda unit: [CHANNEL], settle_usec=2 * SECOND)
        assert [a.kind for a in book.check(NOW_USEC + HOUR, held)] == [AlertKind.FAILING]
        conn.execute("DELETE FROM alert_deliveries")
        conn.execute("DELETE FROM alerts")
        conn.execute("DELETE FROM alert_state")
        conn.commit()


def test_a_run_judged_again_by_the_periodic_check_makes_no_second_alert(db: Path) -> None:
    conn = connect(db)
    book = ledger(conn)
    record(conn, 1, False, NOW_USEC + MINUTE)
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    book.judge_runs(NOW_USEC + 3 * MINUTE, ["backup.service"])
    book.judge_runs(NOW_USEC + 4 * MINUTE, ["backup.service"])
    book.check(NOW_USEC + 5 * MINUTE)
    assert kinds(conn) == [("backup.service", "failing")]


def test_a_restart_between_two_failures_neither_forgets_the_first_nor_alerts_twice(
    db: Path,
) -> None:
    conn = connect(db)
    ledger(conn)
    record(conn, 1, False, NOW_USEC + MINUTE)
    ledger(conn).judge_runs(NOW_USEC + MINUTE)
    conn.close()

    conn = connect(db)  # a new daemon: nothing but the store survives
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    ledger(conn).check(NOW_USEC + 3 * MINUTE)
    ledger(conn).check(NOW_USEC + 4 * MINUTE)
    record(conn, 3, True, NOW_USEC + 5 * MINUTE)
    ledger(conn).judge_runs(NOW_USEC + 5 * MINUTE, ["backup.service"])
    assert kinds(conn) == [("backup.service", "failing"), ("backup.service", "recovered")]


def test_runs_from_before_alerting_started_count_but_alert_nobody(db: Path) -> None:
    conn = connect(db)
    for n in range(1, 4):
        record(conn, n, False, NOW_USEC - n * HOUR)
    book = ledger(conn)
    book.check(NOW_USEC)
    assert kinds(conn) == []
    record(conn, 4, False, NOW_USEC + MINUTE)
    [alert] = book.judge_runs(NOW_USEC + MINUTE)
    assert alert.summary == "failed 4 times in a row (exit-code)"


def test_a_timer_that_fired_with_no_run_after_it_is_one_missed_run(db: Path) -> None:
    conn = connect(db)
    book = ledger(conn)
    book.check(NOW_USEC)  # alerting starts watching the timer's service
    timer = TimerState("cond.timer", "cond.service", NOW_USEC + 2 * HOUR, NOW_USEC + HOUR)
    database.write_batch(conn, database.Batch(timers=[timer]))
    book.check(NOW_USEC + 10 * MINUTE)
    assert kinds(conn) == []
    book.check(NOW_USEC + HOUR + 6 * MINUTE)
    book.check(NOW_USEC + HOUR + 7 * MINUTE)
    assert kinds(conn) == [("cond.service", "missed")]


def test_units_that_are_not_observed_are_not_checked(db: Path) -> None:
    conn = connect(db)
    timer = TimerState("x.timer", "ignored.service", NOW_USEC + HOUR, NOW_USEC + MINUTE)
    database.write_batch(conn, database.Batch(timers=[timer]))
    book = AlertLedger(conn, CONFIG, lambda unit: [CHANNEL], lambda unit: unit != "ignored.service")
    book.check(NOW_USEC)
    book.check(NOW_USEC + HOUR)
    assert conn.execute("SELECT COUNT(*) FROM alert_state").fetchone()[0] == 0


def test_each_attempt_is_recorded_and_retried_later_and_later_until_it_gives_up(
    db: Path,
) -> None:
    conn = connect(db)
    book = ledger(conn)
    record(conn, 1, False, NOW_USEC + MINUTE)
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    book.judge_runs(NOW_USEC + 3 * MINUTE)
    when = NOW_USEC + 10 * MINUTE
    statuses, delays = [], []
    for _ in range(3):
        [due] = outbox.due_deliveries(conn, when)
        statuses.append(
            outbox.record_attempt(
                conn, due, when, 500_000, "HTTP 500", max_attempts=3, retry_delay_usec=SECOND
            )
        )
        next_usec = outbox.next_due_usec(conn)
        delays.append(None if next_usec is None else next_usec - when)
        when = next_usec or when
    assert statuses == ["pending", "pending", "failed"]
    assert delays == [1_500_000, 2_500_000, None]
    [listed] = outbox.recent_alerts(conn)
    [delivery] = listed.deliveries
    assert delivery.status == "failed"
    assert [a.error for a in delivery.attempts] == ["HTTP 500"] * 3


def test_a_delivery_in_progress_is_not_handed_out_twice(db: Path) -> None:
    conn = connect(db)
    record(conn, 1, False, NOW_USEC + MINUTE)
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    ledger(conn).judge_runs(NOW_USEC + 3 * MINUTE)
    [due] = outbox.due_deliveries(conn, NOW_USEC + HOUR)
    assert outbox.due_deliveries(conn, NOW_USEC + HOUR, busy={due.id}) == []


def test_the_message_names_host_unit_result_exit_status_duration_output_and_command(
    db: Path,
) -> None:
    conn = connect(db)
    record(conn, 1, False, NOW_USEC + MINUTE)
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    ledger(conn).judge_runs(NOW_USEC + 3 * MINUTE)
    [due] = outbox.due_deliveries(conn, NOW_USEC + HOUR)
    message = compose(conn, due.alert, "host1", 3)

    assert message.title == "[host1] backup.service failed 2 times in a row (exit-code)"
    assert message.notify_type == "failure"
    assert message.body == (
        "backup.service on host1 failed 2 times in a row (exit-code).\n"
        "\n"
        "Run:         2 (00000000000000000000000000000002)\n"
        "Result:      exit-code\n"
        "Exit status: 3\n"
        "Started:     2026-11-23 15:01:58 UTC\n"
        "Duration:    2.0s\n"
        "Trigger:     backup.timer\n"
        "\n"
        "No output recorded.\n"
        "\n"
        "Full run: observer show 2"
    )


def test_the_message_shows_the_last_lines_of_output_printably(db: Path) -> None:
    conn = connect(db)
    run = record(conn, 1, False, NOW_USEC + MINUTE)
    lines = [
        database.StoredLine(run.key, seq, NOW_USEC + seq, 6, f"line {seq}".encode())
        for seq in range(30)
    ]
    lines.append(database.StoredLine(run.key, 30, NOW_USEC + 30, 3, b"\x1b[31mdisk full"))
    database.write_batch(conn, database.Batch(lines=lines))
    book = ledger(conn, AlertsConfig(present=True, rules=AlertRules(failures=1)))
    book.judge_runs(NOW_USEC + 3 * MINUTE)
    [due] = outbox.due_deliveries(conn, NOW_USEC + HOUR)
    body = compose(conn, due.alert, "host1", 3).body
    assert "Last 3 of 31 lines of output:\n  line 28\n  line 29\n  \\x1b[31mdisk full\n" in body


def test_old_alerts_are_pruned_with_their_deliveries_and_attempts(db: Path) -> None:
    conn = connect(db)
    record(conn, 1, False, NOW_USEC + MINUTE)
    record(conn, 2, False, NOW_USEC + 2 * MINUTE)
    ledger(conn).judge_runs(NOW_USEC + 3 * MINUTE)
    [due] = outbox.due_deliveries(conn, NOW_USEC + HOUR)
    outbox.record_attempt(conn, due, NOW_USEC, 1, None, max_attempts=3, retry_delay_usec=1)
    assert outbox.prune_alerts(conn, NOW_USEC + 4 * MINUTE) == 1
    for table in ("alerts", "alert_deliveries", "alert_attempts"):
        assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_a_database_of_schema_1_gains_the_alert_tables_and_keeps_its_runs(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(schema.BASE_SCHEMA)
    conn.execute(
        "INSERT INTO runs (unit, invocation_id, host, source) VALUES ('a.service', 'x', 'h', 'bus')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    conn = connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 9
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 0
    conn.close()
    database.open_for_reading(db).close()
