"""The CLI driven through main() against a real SQLite file, at a fixed time in UTC."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from observer.__main__ import main
from observer.spans import human_duration
from tests.unit.recorded_runs import invocation, write_store


def set_time_zone(tz: str | None) -> None:
    if tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = tz
    time.tzset()


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    before = os.environ.get("TZ")
    set_time_zone("UTC")
    yield
    set_time_zone(before)


pytestmark = pytest.mark.usefixtures("fixed_now")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(write_store(tmp_path / "observer.db"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_it_prints_a_units_history_as_an_aligned_table(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    assert run_cli(capsys, "history", "backup", "--db", db) == (
        0,
        "ID  STARTED              DURATION  RESULT     EXIT     TRIGGER\n"
        " 4  2026-11-23 14:50:00         -  running    -        backup.timer\n"
        " 3  2026-11-23 12:00:00     2h05m  signal     SIGKILL  -\n"
        " 2  2026-11-22 13:00:00     3m04s  exit-code  3        backup.timer\n"
        " 1  2026-11-21 15:00:00      1.2s  success    0        backup.timer\n",
        "",
    )


def test_it_prints_history_as_json_with_stable_field_names(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, _ = run_cli(capsys, "history", "backup.service", "-n", "3", "--json", "--db", db)
    runs = json.loads(out)
    assert status == 0
    assert [run["id"] for run in runs] == [4, 3, 2]
    assert runs[2] == {
        "id": 2,
        "unit": "backup.service",
        "user": None,
        "invocation_id": invocation(2),
        "host": "host1",
        "source": "bus",
        "trigger": "backup.timer",
        "started_at": "2026-11-22T13:00:00.000000+00:00",
        "finished_at": "2026-11-22T13:03:04.500000+00:00",
        "duration_seconds": 184.5,
        "result": "exit-code",
        "exit_status": 3,
        "signal": None,
        "restarts": 0,
        "output_truncated": True,
        "reason": None,
        "cpu_seconds": None,
        "io_read_bytes": None,
        "io_write_bytes": None,
        "memory_peak_bytes": None,
        "output_lost_lines": None,
        "findings": [],
        "definition_changed": False,
    }
    assert (runs[1]["exit_status"], runs[1]["signal"]) == (None, "KILL")
    assert (runs[0]["result"], runs[0]["finished_at"], runs[0]["duration_seconds"]) == (
        None,
        None,
        None,
    )


def test_it_shows_a_run_with_escaped_output_and_markers_where_lines_were_dropped(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, _ = run_cli(capsys, "show", "2", "--db", db)
    assert status == 0
    facts, output = out.split("\n\n")
    assert "Exit status: 3\n" in facts
    assert "Duration:    3m04s\n" in facts
    assert "Output:      7 lines, 200 bytes (4 lines, 120 bytes dropped)" in facts
    assert output == (
        "2026-11-22 13:00:00.100  info     starting backup\n"
        "2026-11-22 13:00:00.200  warning  bad name \\xff\\xfe here\n"
        "[... 3 lines of output dropped ...]\n"
        "2026-11-22 13:00:00.300  err      \\x1b[31mdisk full\\x1b[0m\n"
        "[... 1 line of output dropped ...]\n"
    )
    assert "\x1b" not in out


def test_it_shows_a_run_as_json_with_its_output_and_dropped_markers(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, _ = run_cli(capsys, "show", invocation(2), "--json", "--db", db)
    run = json.loads(out)
    assert status == 0
    assert run["id"] == 2
    assert run["output"] == [
        {"time": "2026-11-22T13:00:00.100000+00:00", "priority": 6, "message": "starting backup"},
        {
            "time": "2026-11-22T13:00:00.200000+00:00",
            "priority": 4,
            "message": "bad name \\xff\\xfe here",
        },
        {
            "time": None,
            "priority": None,
            "message": "[... 3 lines of output dropped ...]",
            "dropped_lines": 3,
        },
        {
            "time": "2026-11-22T13:00:00.300000+00:00",
            "priority": 3,
            "message": "\\x1b[31mdisk full\\x1b[0m",
        },
        {
            "time": None,
            "priority": None,
            "message": "[... 1 line of output dropped ...]",
            "dropped_lines": 1,
        },
    ]
    assert (run["output_dropped_lines"], run["output_dropped_bytes"]) == (4, 120)


def test_it_shows_the_last_failure_of_a_unit_killed_by_a_signal(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, _ = run_cli(capsys, "last-failure", "backup", "--db", db)
    assert status == 0
    assert out.startswith("Run:         3\nUnit:        backup.service\n")
    assert "Result:      signal\nExit status: SIGKILL\n" in out
    assert out.endswith("\n\n(no output recorded)\n")


def test_it_exits_1_when_a_unit_never_failed(capsys: pytest.CaptureFixture[str], db: str) -> None:
    assert run_cli(capsys, "last-failure", "nightly-report", "--json", "--db", db) == (
        1,
        "",
        "observer: no failed run of 'nightly-report' is recorded\n",
    )


def test_it_exits_1_and_suggests_a_close_match_for_an_unknown_unit(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    assert run_cli(capsys, "history", "bakup", "--db", db) == (
        1,
        "",
        "observer: no runs recorded for unit 'bakup.service' (did you mean 'backup.service'?)\n",
    )


def test_it_exits_1_for_a_run_that_is_not_recorded(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, err = run_cli(capsys, "show", "99", "--db", db)
    assert (status, out) == (1, "")
    assert err.startswith("observer: no run '99' is recorded")


def test_it_exits_1_when_there_is_no_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run_cli(capsys, "status", "--db", str(tmp_path / "missing.db"))
    assert status == 1
    assert err.startswith(f"observer: no database at '{tmp_path / 'missing.db'}'")


def test_a_database_being_made_is_told_apart_from_another_programs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The writer creates the file, then its schema: a reading in between finds it empty."""
    empty, other = tmp_path / "empty.db", tmp_path / "other.db"
    empty.touch()
    with sqlite3.connect(other) as conn:
        conn.execute("PRAGMA user_version = 42")
    _, _, made = run_cli(capsys, "status", "--db", str(empty))
    _, _, foreign = run_cli(capsys, "status", "--db", str(other))

    assert made.startswith(f"observer: {str(empty)!r} holds no observer data yet")
    assert foreign.startswith(f"observer: {str(other)!r} is not an observer database of schema")


def test_it_reads_the_database_that_observer_db_names(
    capsys: pytest.CaptureFixture[str], db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSERVER_DB", db)
    status, out, _ = run_cli(capsys, "history", "nightly-report", "--json")
    assert (status, [run["id"] for run in json.loads(out)]) == (0, [6])


def test_it_gives_stats_of_one_unit_as_an_object(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, _ = run_cli(capsys, "stats", "backup", "--json", "--db", db)
    assert status == 0
    assert json.loads(out) == {
        "unit": "backup.service",
        "user": None,
        "host": "host1",
        "runs": 3,
        "successes": 1,
        "failures": 2,
        "skipped": 0,
        "success_rate": pytest.approx(1 / 3),
        "duration_p50_seconds": 184.5,
        "duration_p95_seconds": 7500.0,
        "duration_max_seconds": 7500.0,
        "cpu_p50_seconds": None,
        "cpu_p95_seconds": None,
        "memory_peak_p50_bytes": None,
        "memory_peak_p95_bytes": None,
        "last_success_at": "2026-11-21T15:00:01.200000+00:00",
        "last_failure_at": "2026-11-23T14:05:00.000000+00:00",
        "consecutive_failures": 2,
        "trend": None,
    }


def test_it_gives_stats_of_every_unit_as_a_list_within_the_since_window(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    status, out, _ = run_cli(capsys, "stats", "--since", "1d", "--json", "--db", db)
    stats = {s["unit"]: s for s in json.loads(out)}
    assert status == 0
    assert list(stats) == ["backup.service", "backup@home-user.service", "nightly-report"]
    assert (stats["backup.service"]["runs"], stats["backup.service"]["failures"]) == (1, 1)
    assert stats["backup.service"]["consecutive_failures"] == 2


def test_it_prints_stats_as_a_table(capsys: pytest.CaptureFixture[str], db: str) -> None:
    status, out, _ = run_cli(capsys, "stats", "--db", db)
    lines = out.splitlines()
    assert status == 0
    assert lines[0] == (
        "UNIT                      RUNS  OK  FAILED  SKIPPED  SUCCESS    P50    P95    MAX  "
        "CPU P50  CPU P95  MEM P50  MEM P95  LAST SUCCESS         LAST FAILURE         "
        "FAILED IN A ROW  TREND"
    )
    assert lines[1].split() == [
        "backup.service", "3", "1", "2", "0", "33.3%", "3m04s", "2h05m", "2h05m", "-", "-",
        "-", "-", "2026-11-21", "15:00:01", "2026-11-23", "14:05:00", "2", "-",
    ]  # fmt: skip


@pytest.mark.parametrize("since", ["3x", "", "-1d", "d", "1y", "1.5.h"])
def test_it_rejects_a_bad_since_as_a_usage_error(
    capsys: pytest.CaptureFixture[str], db: str, since: str
) -> None:
    status, out, err = run_cli(capsys, "runs", f"--since={since}", "--db", db)
    assert (status, out) == (2, "")
    assert f"argument --since: invalid duration '{since}': use a number and a unit" in err


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0.35, "350ms"),
        (1.2, "1.2s"),
        (59.99, "1m00s"),
        (184.5, "3m04s"),
        (7500.0, "2h05m"),
        (2 * 86400 + 4 * 3600, "2d04h"),
    ],
)
def test_it_shows_durations_for_people(seconds: float | None, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_it_lists_the_runs_of_the_last_24_hours_by_default(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    assert run_cli(capsys, "runs", "--db", db) == (
        0,
        "ID  UNIT                      STARTED              DURATION  RESULT   EXIT     TRIGGER\n"
        " 4  backup.service            2026-11-23 14:50:00         -  running  -        "
        "backup.timer\n"
        " 5  backup@home-user.service  2026-11-23 14:30:00     350ms  success  0        -\n"
        " 3  backup.service            2026-11-23 12:00:00     2h05m  signal   SIGKILL  -\n"
        " 6  nightly-report            2026-11-23 10:00:00      2.0s  success  0        -\n",
        "",
    )


def test_it_filters_runs_by_unit_glob_and_failure(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    _, out, _ = run_cli(capsys, "runs", "--since", "1w", "--unit", "backup", "--json", "--db", db)
    assert [run["id"] for run in json.loads(out)] == [4, 3, 2, 1]
    _, out, _ = run_cli(capsys, "runs", "--since", "2w", "--failed", "--json", "--db", db)
    assert [run["id"] for run in json.loads(out)] == [3, 2]
    _, out, _ = run_cli(capsys, "runs", "--unit", "backup@*", "--json", "--db", db)
    assert [run["unit"] for run in json.loads(out)] == ["backup@home-user.service"]


def test_it_says_so_when_no_runs_match(capsys: pytest.CaptureFixture[str], db: str) -> None:
    assert run_cli(capsys, "runs", "--since", "1m", "--db", db) == (0, "no matching runs\n", "")
    assert run_cli(capsys, "runs", "--since", "1m", "--json", "--db", db) == (0, "[]\n", "")


def test_it_prints_each_units_status_with_the_next_timer_run(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    assert run_cli(capsys, "status", "--db", db) == (
        0,
        "UNIT                      LAST RESULT  LAST STARTED         NEXT RUN             "
        "SUCCESS  FAILED IN A ROW\n"
        "backup.service            running      2026-11-23 14:50:00  2026-11-23 16:00:00    "
        "33.3%                2\n"
        "backup@home-user.service  success      2026-11-23 14:30:00  -                     "
        "100.0%                0\n"
        "nightly-report            success      2026-11-23 10:00:00  -                     "
        "100.0%                0\n",
        "",
    )


def test_it_gives_status_as_json(capsys: pytest.CaptureFixture[str], db: str) -> None:
    status, out, _ = run_cli(capsys, "status", "--json", "--db", db)
    assert status == 0
    assert json.loads(out)[0] == {
        "unit": "backup.service",
        "user": None,
        "host": "host1",
        "last_result": "running",
        "last_started_at": "2026-11-23T14:50:00.000000+00:00",
        "next_run_at": "2026-11-23T16:00:00.000000+00:00",
        "success_rate": pytest.approx(1 / 3),
        "consecutive_failures": 2,
        "running": True,
        "open_problems": [],
    }


def test_it_writes_times_with_the_local_offset(capsys: pytest.CaptureFixture[str], db: str) -> None:
    set_time_zone("XYZ-2")  # two hours east of UTC, without needing tzdata
    _, out, _ = run_cli(capsys, "history", "backup", "-n", "1", "--json", "--db", db)
    assert json.loads(out)[0]["started_at"] == "2026-11-23T16:50:00.000000+02:00"
    _, out, _ = run_cli(capsys, "history", "backup", "-n", "1", "--db", db)
    assert "2026-11-23 16:50:00" in out


def test_it_accepts_debug_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    assert run_cli(capsys, "--debug", "history", "backup", "-n", "1", "--db", db)[0] == 0
    assert run_cli(capsys, "history", "backup", "-n", "1", "--db", db, "--debug")[0] == 0


@pytest.mark.parametrize(
    "argv", [["history"], ["history", "backup", "-n", "0"], ["frobnicate"], []]
)
def test_it_exits_2_on_a_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run_cli(capsys, *argv)
    assert (status, out) == (2, "")
    assert "usage: observer" in err


def test_it_exits_quietly_when_the_reader_goes_away(db: str) -> None:
    reader, writer = os.pipe()
    os.close(reader)
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "observer", "runs", "--since", "2w", "--db", db],
            stdout=writer,
            stderr=subprocess.PIPE,
            check=False,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert (finished.returncode, finished.stderr) == (141, b"")


# A process whose exit handler, registered before observer's entry point runs, says whether
# Python tore the process down the usual way.
ENTRY = """
import atexit, sys
atexit.register(lambda: print("torn down", flush=True))
sys.argv = ["observer", *sys.argv[1:]]
from observer.__main__ import entry
entry()
"""


@pytest.mark.parametrize(
    ("argv", "status", "shown"),
    [
        (["history", "backup.service"], 0, ("ID  STARTED", "backup.timer\n")),
        (["history", "nothing.service"], 1, ("", "")),
        (["no-such-command"], 2, ("", "")),
    ],
)
def test_a_command_ends_without_tearing_python_down_and_keeps_its_output_and_status(
    db: str, argv: list[str], status: int, shown: tuple[str, str]
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", ENTRY, *argv, "--db", db],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert finished.returncode == status, finished.stderr
    first, last = shown  # the whole table, flushed: its first line and its last
    assert finished.stdout.startswith(first)
    assert finished.stdout.endswith(last)
    assert "torn down" not in finished.stdout
