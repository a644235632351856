"""`observer timeline` and `observer next` on a real store (tests/unit/recorded_runs.py), at a
fixed time; the window queries and the expected overlaps of `next`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from observer import users
from observer.reading import upcoming, window
from tests.unit.recorded_runs import HOUR, MINUTE, NOW_USEC, SECOND
from tests.unit.test_cli import run_cli

pytestmark = pytest.mark.usefixtures("utc", "fixed_now")


def test_timeline_json_has_the_runs_of_the_last_day_per_unit(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, out, _ = run_cli(capsys, "timeline", "--db", str(db), "--json")
    found = json.loads(out)
    assert status == 0
    assert found["from_time"] == "2026-11-22T15:00:00.000000+00:00"
    runs = {u["unit"]: [(r["id"], r["kind"]) for r in u["runs"]] for u in found["units"]}
    # Run 2 began 26 hours ago and ended minutes later: outside the window.
    assert runs == {
        "nightly-report": [(6, "ok")],
        "backup.service": [(3, "fail"), (4, "running")],
        "backup@home-user.service": [(5, "ok")],
    }
    assert found["units"][0]["unit"] == "nightly-report"  # the first to run
    assert found["overlaps"] == []


def test_timeline_draws_each_unit_within_the_width(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, out, _ = run_cli(capsys, "timeline", "--db", str(db), "--width", "80")
    lines = out.splitlines()
    assert status == 0
    assert max(len(line) for line in lines) <= 80
    backup = next(line for line in lines if line.startswith("backup.service "))
    assert "X" in backup
    assert backup.endswith(">")


def test_timeline_of_a_glob_shows_only_the_units_it_matches(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    _, out, _ = run_cli(capsys, "timeline", "backup*", "--db", str(db), "--json")
    assert [u["unit"] for u in json.loads(out)["units"]] == [
        "backup.service", "backup@home-user.service",
    ]  # fmt: skip


def test_timeline_of_a_unit_never_recorded_says_so(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, _, err = run_cli(capsys, "timeline", "nosuch", "--db", str(db))
    assert status == 1
    assert "no recorded unit matches 'nosuch'" in err


def test_timeline_of_a_short_window_clips_the_run_that_began_before_it(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    _, out, _ = run_cli(capsys, "timeline", "backup", "--since", "2h", "--db", str(db), "--json")
    [unit] = json.loads(out)["units"]
    assert [(r["id"], r["began_before_window"]) for r in unit["runs"]] == [(3, True), (4, False)]


def test_timeline_of_a_window_without_runs_says_so(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    assert run_cli(capsys, "timeline", "nightly-report", "--since", "1h", "--db", str(db)) == (
        0, "no runs in the last 1h\n", "",
    )  # fmt: skip


def test_timeline_refuses_a_width_too_small_to_draw_in(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, _, err = run_cli(capsys, "timeline", "--db", str(db), "--width", "3")
    assert status == 2
    assert "invalid width '3'" in err


def test_next_lists_each_timer_with_its_units_usual_duration(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    status, out, _ = run_cli(capsys, "next", "--db", str(db), "--json")
    assert status == 0
    [timer] = json.loads(out)
    assert timer["timer"] == "backup.timer"
    assert timer["unit"] == "backup.service"
    assert timer["next_at"] == "2026-11-23T16:00:00.000000+00:00"
    assert timer["usual_seconds"] == pytest.approx(184.5)  # the median of its 3 finished runs
    assert timer["overlaps"] == []
    _, out, _ = run_cli(capsys, "next", "--db", str(db))
    assert out.splitlines() == [
        "NEXT                  LEFT  UNIT            TIMER         USUAL  OVERLAPS",
        "2026-11-23 16:00:00  1h00m  backup.service  backup.timer  3m04s  -",
    ]


def test_next_of_another_host_lists_nothing(capsys: pytest.CaptureFixture[str], db: Path) -> None:
    assert run_cli(capsys, "next", "--db", str(db), "--host", "web*") == (
        0, "no timer is scheduled\n", "",
    )  # fmt: skip


# -- the queries and the expected overlaps ----------------------------------------------------


def test_the_window_holds_runs_begun_before_it_that_ended_in_it_or_still_run(
    conn: sqlite3.Connection,
) -> None:
    units = window.units_matching(conn, [], users.ALL)
    runs = window.runs_in_window(conn, NOW_USEC - 2 * HOUR, units)
    assert sorted(run.id for run in runs) == [3, 4, 5]
    assert window.runs_in_window(conn, NOW_USEC - 2 * HOUR, units, lambda h: h != "host1") == []


def schedule(*starts: tuple[str, int, float | None]) -> list[upcoming.Scheduled]:
    return [
        upcoming.Scheduled(f"{unit}.timer", f"{unit}.service", "host1", at, p50)
        for unit, at, p50 in starts
    ]


def test_runs_expected_to_overlap_are_those_whose_usual_durations_meet() -> None:
    starts = schedule(
        ("a", NOW_USEC, 600.0),  # until +10m
        ("b", NOW_USEC + 5 * MINUTE, 60.0),  # inside a's
        ("c", NOW_USEC + 10 * MINUTE, 60.0),  # starts as a ends: no overlap
        ("d", NOW_USEC + 10 * MINUTE + SECOND, None),  # duration unknown: no time
    )
    found = upcoming.expected_overlaps(starts)
    assert {starts[i].unit: [o.unit for o in found[i]] for i in found} == {
        "a.service": ["b.service"],
        "b.service": ["a.service"],
        "c.service": [],
        "d.service": [],
    }


def test_two_timers_of_one_unit_are_not_expected_to_overlap() -> None:
    starts = [
        upcoming.Scheduled("a.timer", "a.service", "host1", NOW_USEC, 600.0),
        upcoming.Scheduled("a-again.timer", "a.service", "host1", NOW_USEC + MINUTE, 600.0),
    ]
    assert upcoming.expected_overlaps(starts) == {0: [], 1: []}
