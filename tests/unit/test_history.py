"""The read-only queries over a real SQLite store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from observer.model import UnknownUnitError
from observer.reading import history
from observer.reading.history import DroppedLines, LoggedLine
from observer.reading.stats import unit_stats
from observer.store import database, summary
from tests.unit.recorded_runs import (
    FAILED_RUN_START,
    HOUR,
    MINUTE,
    NOW_USEC,
    RUNS,
    invocation,
    write_store,
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database.open_for_reading(write_store(tmp_path / "observer.db"))
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("backup", "backup.service"),
        ("backup.service", "backup.service"),
        ("backup.timer", "backup.service"),
        ("backup@home-user.service", "backup@home-user.service"),
        ("backup@home-user", "backup@home-user.service"),
        ("nightly-report", "nightly-report"),
    ],
)
def test_it_resolves_what_a_person_types_to_a_recorded_unit(
    conn: sqlite3.Connection, name: str, unit: str
) -> None:
    assert history.resolve_unit(conn, name) == unit


def test_it_suggests_a_close_match_for_a_misspelt_unit(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownUnitError) as raised:
        history.resolve_unit(conn, "bakup")
    assert str(raised.value) == (
        "no runs recorded for unit 'bakup.service' (did you mean 'backup.service'?)"
    )


def test_it_says_where_to_look_when_no_unit_is_close(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownUnitError) as raised:
        history.resolve_unit(conn, "zzz.socket")
    assert str(raised.value) == (
        "no runs recorded for unit 'zzz.socket' "
        "('observer status' lists the units with recorded runs)"
    )


def test_it_lists_a_units_runs_newest_first_up_to_the_limit(conn: sqlite3.Connection) -> None:
    runs = history.unit_history(conn, "backup.service", limit=3)
    assert [run.id for run in runs] == [4, 3, 2]
    assert runs[0].running
    assert runs[0].duration_seconds is None


def test_it_gives_exit_status_only_for_exits_and_a_signal_name_for_kills(
    conn: sqlite3.Connection,
) -> None:
    by_id = {run.id: run for run in history.unit_history(conn, "backup.service")}
    assert (by_id[2].exit_status, by_id[2].signal) == (3, None)
    assert (by_id[3].exit_status, by_id[3].signal) == (None, "KILL")
    assert (by_id[4].exit_status, by_id[4].signal) == (None, None)
    assert by_id[2].duration_seconds == 184.5
    assert by_id[2].output_truncated
    assert not by_id[1].output_truncated


def test_it_shows_a_run_with_its_output_and_the_gaps_where_lines_were_dropped(
    conn: sqlite3.Connection,
) -> None:
    detail = history.run_detail(conn, "2")
    assert detail.run.invocation_id == invocation(2)
    assert detail.output == (
        LoggedLine(0, FAILED_RUN_START + 100_000, 6, b"starting backup"),
        LoggedLine(1, FAILED_RUN_START + 200_000, 4, b"bad name \xff\xfe here"),
        DroppedLines(3),
        LoggedLine(5, FAILED_RUN_START + 300_000, 3, b"\x1b[31mdisk full\x1b[0m"),
        DroppedLines(1),
    )
    assert (detail.output_lines, detail.output_dropped_lines) == (7, 4)


def test_it_finds_a_run_by_its_invocation_id(conn: sqlite3.Connection) -> None:
    assert history.run_detail(conn, invocation(3)).run.id == 3


@pytest.mark.parametrize("run_id", ["99", "latest", invocation(99)])
def test_it_refuses_a_run_that_is_not_recorded(conn: sqlite3.Connection, run_id: str) -> None:
    with pytest.raises(history.NoSuchRunError, match=f"no run '{run_id}'"):
        history.run_detail(conn, run_id)


def test_it_marks_lines_dropped_before_the_first_kept_one() -> None:
    kept = [LoggedLine(2, 0, 6, b"c")]
    assert history.with_gaps(kept, total=3) == [DroppedLines(2), kept[0]]
    assert history.with_gaps([], total=4) == [DroppedLines(4)]


def test_it_finds_the_newest_failed_run_and_ignores_the_running_one(
    conn: sqlite3.Connection,
) -> None:
    assert history.last_failure(conn, "backup.service").run.id == 3


def test_it_says_so_when_a_unit_never_failed(conn: sqlite3.Connection) -> None:
    with pytest.raises(history.NoFailedRunError, match="no failed run of 'nightly-report'"):
        history.last_failure(conn, "nightly-report")


def test_it_counts_finished_runs_with_nearest_rank_percentiles(conn: sqlite3.Connection) -> None:
    [stats] = unit_stats(conn, "backup.service")
    assert (stats.runs, stats.successes, stats.failures) == (3, 1, 2)
    assert stats.success_rate == pytest.approx(1 / 3)
    assert stats.duration_p50_seconds == 184.5
    assert stats.duration_p95_seconds == stats.duration_max_seconds == 7500.0
    assert stats.last_success_usec == NOW_USEC - 48 * HOUR + 1_200_000
    assert stats.last_failure_usec == NOW_USEC - 55 * MINUTE
    assert stats.consecutive_failures == 2


def test_it_limits_stats_to_a_window_but_keeps_the_whole_failure_streak(
    conn: sqlite3.Connection,
) -> None:
    [stats] = unit_stats(conn, "backup.service", since_usec=NOW_USEC - 24 * HOUR)
    assert (stats.runs, stats.successes, stats.failures) == (1, 0, 1)
    assert stats.success_rate == 0.0
    assert stats.last_success_usec is None
    assert stats.consecutive_failures == 2


def test_it_gives_stats_for_every_unit_in_name_order(conn: sqlite3.Connection) -> None:
    units = [s.unit for s in unit_stats(conn)]
    assert units == ["backup.service", "backup@home-user.service", "nightly-report"]


def test_it_takes_the_nearest_rank_percentile() -> None:
    assert summary.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert summary.percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert summary.percentile([5.0], 50) == 5.0
    assert summary.percentile([], 50) is None


def test_it_lists_runs_of_all_units_since_a_time(conn: sqlite3.Connection) -> None:
    runs = history.recent_runs(conn, since_usec=NOW_USEC - 4 * HOUR)
    assert [run.id for run in runs] == [4, 5, 3]


def test_it_filters_runs_by_unit_glob_and_failure(conn: sqlite3.Connection) -> None:
    assert [r.id for r in history.recent_runs(conn, unit_glob="backup")] == [4, 3, 2, 1]
    assert [r.id for r in history.recent_runs(conn, unit_glob="backup@*")] == [5]
    assert [r.id for r in history.recent_runs(conn, unit_glob="*report")] == [6]
    assert [r.id for r in history.recent_runs(conn, failed_only=True)] == [3, 2]


@pytest.mark.parametrize(
    ("glob", "unit", "matches"),
    [
        ("backup*", "backup.service", True),
        ("backup", "backup.service", True),
        ("backup.s?rvice", "backup.service", True),
        ("backup.service", "backupxservice", False),
        ("back[a-c]up", "backup.service", False),
        ("[b]ackup", "backup.service", True),
        ("backup(", "backup(.service", True),
    ],
)
def test_it_matches_unit_globs_with_fnmatch_rules(glob: str, unit: str, matches: bool) -> None:
    assert history.unit_matcher(glob)(unit) is matches


def test_it_reports_each_units_status_with_the_timers_next_run(conn: sqlite3.Connection) -> None:
    statuses = {s.unit: s for s in history.unit_status(conn)}
    backup = statuses["backup.service"]
    assert (backup.last_result, backup.running) == ("running", True)
    assert backup.last_started_usec == NOW_USEC - 10 * MINUTE
    assert backup.next_run_usec == NOW_USEC + HOUR
    assert backup.consecutive_failures == 2
    report = statuses["nightly-report"]
    assert (report.last_result, report.running, report.next_run_usec) == ("success", False, None)
    assert report.success_rate == 1.0


def test_runs_by_id_reads_those_above_an_id_and_those_asked_for_in_id_order(
    conn: sqlite3.Connection,
) -> None:
    newest = len(RUNS)
    assert [r.id for r in history.runs_by_id(conn, above_id=newest - 2)] == [newest - 1, newest]
    found = history.runs_by_id(conn, above_id=newest - 1, ids=[2, 1, newest, 99])
    assert [r.id for r in found] == [1, 2, newest]
    assert [r.id for r in history.runs_by_id(conn, ids=[3, newest + 1])] == [3]
    assert history.runs_by_id(conn) == []
