"""Spooled runs of `observer run`: kept whole, moved into the store exactly once."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from observer.model import Run, Source, TimerState
from observer.run import spool
from observer.run.schedule import Schedule, ScheduleError, parse_cron
from observer.run.spool import RunRecord
from observer.store import database
from observer.store.database import OutputCounts, StoredLine

INVOCATION = "4f1c" + "0" * 28


def record(invocation_id: str = INVOCATION, metrics: bytes | None = None) -> RunRecord:
    run = Run(
        unit="backup-db",
        invocation_id=invocation_id,
        host="host1",
        source=Source.WRAPPER,
        started_usec=1_000_000,
        finished_usec=3_000_000,
        result="exit-code",
        exit_code="exited",
        exit_status=3,
        boot_id="b" * 32,
    )
    lines = (
        StoredLine(invocation_id, 0, 1_500_000, 6, b"copying \xff\x00", "stdout"),
        StoredLine(invocation_id, 2, 2_500_000, 3, b"disk full", "stderr"),
    )
    counts = OutputCounts(invocation_id, 3, 30, 1, 9, 1, 2_500_000)
    timer = TimerState("cron:backup-db", "backup-db", 61_000_000, 1_000_000)
    return RunRecord(run, lines, counts, timer, metrics)


def test_a_spooled_run_reads_back_exactly_as_it_was_written(tmp_path: Path) -> None:
    original = record(metrics=b"backup_bytes 12\n")

    path = spool.spool(original, tmp_path / "spool", tmp_path / "observer.db")

    assert path.name == f"{INVOCATION}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    meant_for, read = spool.decode(path.read_bytes())
    assert meant_for == str(tmp_path / "observer.db")
    assert read == original


def test_importing_stores_the_run_once_and_removes_the_file_after_the_commit(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    spool.spool(record(metrics=b"backup_bytes 12\n"), tmp_path / "spool", db)
    # An earlier, interrupted import left a line that is not part of the run's output.
    conn.execute("INSERT INTO output VALUES (?, 1, 0, 6, 'stdout', x'00')", (INVOCATION,))
    conn.commit()

    imported = spool.import_spooled(conn, tmp_path / "spool", db, tmp_path / "metrics")
    again = spool.import_spooled(conn, tmp_path / "spool", db, tmp_path / "metrics")
    spool.spool(record(), tmp_path / "spool", db)  # the same run spooled twice
    twice = spool.import_spooled(conn, tmp_path / "spool", db, tmp_path / "metrics")

    assert [run.invocation_id for run in imported] == [INVOCATION]
    assert (again, twice) == ([], [])
    assert conn.execute("SELECT COUNT(*), result, exit_status FROM runs").fetchone() == (
        1,
        "exit-code",
        3,
    )
    assert conn.execute("SELECT seq, message FROM output ORDER BY seq").fetchall() == [
        (0, b"copying \xff\x00"),
        (2, b"disk full"),
    ]
    assert conn.execute("SELECT next_elapse_usec FROM timers").fetchone() == (61_000_000,)
    assert (tmp_path / "metrics" / "backup-db.prom").read_bytes() == b"backup_bytes 12\n"
    assert not list((tmp_path / "spool").glob("*.json"))


def test_a_spooled_run_completes_a_run_whose_start_was_stored(tmp_path: Path) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    full = record()
    spool.write_record(conn, RunRecord(Run("backup-db", INVOCATION, "host1", Source.WRAPPER, 1)))
    spool.spool(full, tmp_path / "spool", db)

    imported = spool.import_spooled(conn, tmp_path / "spool", db, None)

    assert [run.invocation_id for run in imported] == [INVOCATION]
    assert conn.execute("SELECT started_usec, finished_usec, result FROM runs").fetchall() == [
        (1, 3_000_000, "exit-code")
    ]


def test_files_for_another_database_are_left_alone_and_bad_ones_set_aside(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    spool.spool(record("1" * 32), directory, tmp_path / "other.db")
    (directory / f"{'2' * 32}.json").write_text('{"format": 1, "run": {"unit": "x"}}')
    (directory / f"{'3' * 32}.json").write_bytes(b"\x00garbage")

    assert spool.import_spooled(conn, directory, db, None) == []
    assert sorted(p.name for p in directory.iterdir()) == [
        f"{'1' * 32}.json",
        f"{'2' * 32}.bad",
        f"{'3' * 32}.bad",
    ]
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)


def test_hostile_spool_files_are_set_aside_and_the_good_one_beside_them_is_imported(
    tmp_path: Path,
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    good = spool.spool(record(), directory, db)
    os.utime(good, (2_000_000_000, 2_000_000_000))  # the newest: read after every bad one
    secret = tmp_path / "secret"
    secret.write_text("root's secret")
    hostile: dict[str, Callable[[Path], object]] = {
        "a" * 32: lambda p: p.symlink_to(secret),
        "b" * 32: os.mkfifo,
        "c" * 32: lambda p: p.write_text("[" * 100_000),
        "d" * 32: lambda p: p.write_bytes(
            good.read_bytes().replace(b'"exit_status":3', b'"exit_status":99999999999999999999')
        ),
        "e" * 32: lambda p: p.write_bytes(
            good.read_bytes().replace(b'"exit_status":3', b'"exit_status":[3]')
        ),
        "f" * 32: lambda p: p.write_bytes(
            good.read_bytes().replace(b'"lines":[[0,', b'"lines":[["x",')
        ),
    }
    for name, make in hostile.items():
        make(directory / f"{name}.json")
    (directory / "g.json").mkdir()

    imported = spool.import_spooled(conn, directory, db, None)

    assert [run.invocation_id for run in imported] == [INVOCATION]
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [f"{name}.bad" for name in hostile] + ["g.json"]
    )
    assert secret.read_text() == "root's secret"


def test_an_unreadable_spool_file_is_reported_once_and_holds_up_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    locked = spool.spool(record("1" * 32), directory, db)
    os.utime(locked, (1, 1))  # the oldest: read first
    spool.spool(record(), directory, db)
    real_read = spool.read_spool_file

    def read(path: Path) -> bytes | None:
        if path == locked:
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(spool, "read_spool_file", read)
    reported: set[str] = set()
    first = spool.import_spooled(conn, directory, db, None, reported=reported)
    again = spool.import_spooled(conn, directory, db, None, reported=reported)

    assert [run.invocation_id for run in first] == [INVOCATION]
    assert again == []
    assert locked.exists()
    assert caplog.text.count("cannot read the spooled run") == 1


def test_metrics_of_a_spooled_run_do_not_replace_newer_ones(tmp_path: Path) -> None:
    newer = spool.place_metrics(tmp_path, "backup-db", b"from a later run\n")

    spool.place_metrics(tmp_path, "backup-db", b"from the spool\n", record().run)

    assert newer.read_bytes() == b"from a later run\n"
    os.utime(newer, (1, 1))
    spool.place_metrics(tmp_path, "backup-db", b"from the spool\n", record().run)
    assert newer.read_bytes() == b"from the spool\n"


def test_the_spool_and_metrics_directories_follow_environment_config_and_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "data" / "observer.db"
    monkeypatch.delenv("OBSERVER_SPOOL", raising=False)
    monkeypatch.delenv("OBSERVER_METRICS_DIR", raising=False)
    assert spool.default_metrics_dir(db) == tmp_path / "data" / "job-metrics"
    assert spool.default_metrics_dir(db, "/srv/m") == Path("/srv/m")
    assert spool.default_spool_dir(db, "/srv/s") == Path("/srv/s")
    # Root's `observer run` and the installed daemon (its own user) share one spool.
    assert spool.default_spool_dir(db) == tmp_path / "data" / "spool"
    monkeypatch.setenv("OBSERVER_SPOOL", str(tmp_path / "s"))
    monkeypatch.setenv("OBSERVER_METRICS_DIR", str(tmp_path / "m"))
    assert spool.default_spool_dir(db, "/srv/s") == tmp_path / "s"
    assert spool.default_metrics_dir(db, "/srv/m") == tmp_path / "m"


# -- schedules -----------------------------------------------------------------------------


def usec(when: datetime) -> int:
    return int(when.timestamp() * 1e6)


def test_every_is_due_one_period_after_the_start() -> None:
    schedule = Schedule(every=timedelta(minutes=5))

    assert schedule.next_after(1_000_000) == 301_000_000


def test_a_cron_expression_is_due_at_its_next_match_in_local_time() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2026, 3, 29, 1, 59, 30, tzinfo=paris)  # daylight saving starts at 2:00

    assert parse_cron("*/5 * * * *").next_after(usec(start), paris) == usec(
        datetime(2026, 3, 29, 3, 0, tzinfo=paris)
    )
    assert parse_cron("@daily").next_after(usec(start), paris) == usec(
        datetime(2026, 3, 30, 0, 0, tzinfo=paris)
    )
    assert parse_cron("30 4 * * MON").next_after(usec(start), UTC) == usec(
        datetime(2026, 3, 30, 4, 30, tzinfo=UTC)
    )


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "@reboot", "*/0 * * * *", ""])
def test_a_bad_cron_expression_is_refused_with_a_reason(expression: str) -> None:
    with pytest.raises(ScheduleError, match="invalid cron expression"):
        parse_cron(expression)


def test_metrics_that_cannot_be_placed_hold_up_no_import(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    directory = tmp_path / "spool"
    spool.spool(record(metrics=b"job_x 1\n"), directory, db)
    not_a_directory = tmp_path / "metrics"
    not_a_directory.write_text("")

    imported = spool.import_spooled(conn, directory, db, not_a_directory)

    assert [run.invocation_id for run in imported] == [INVOCATION]
    assert [p.name for p in directory.iterdir() if p.is_file()] == []
    assert "cannot write the metrics of backup-db" in caplog.text
