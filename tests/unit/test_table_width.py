"""Tables fit the terminal: columns left out and long names shortened at 80 and 120
columns, every column with --wide or when the output is not a terminal."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from observer.reading import history, render
from observer.reading.stats import unit_stats
from observer.store import database
from tests.unit.recorded_runs import write_store


@pytest.fixture(autouse=True)
def in_utc(utc: None) -> None:
    """Every test here reads local times in UTC (the conftest's ``utc``)."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return write_store(tmp_path / "observer.db")


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize("width", [80, 120])
def test_stats_fit_the_terminal_and_keep_the_unit_and_its_success(db: Path, width: int) -> None:
    with closing(database.open_for_reading(db)) as conn:
        stats = unit_stats(conn, None)
    full = render.stats_table(stats)
    assert widest(full) > 120  # the 17 columns, as a pipe gets them
    fitted = render.stats_table(stats, width=width)
    assert widest(fitted) <= width
    header = fitted.splitlines()[0].split()
    assert header[:2] == ["UNIT", "RUNS"]
    assert "SUCCESS" in header
    assert "MEM P95" not in header
    assert len(fitted.splitlines()) == len(full.splitlines())


def test_a_wider_terminal_shows_more_columns(db: Path) -> None:
    with closing(database.open_for_reading(db)) as conn:
        stats = unit_stats(conn, None)
    narrow = render.stats_table(stats, width=80).splitlines()[0]
    wide = render.stats_table(stats, width=120).splitlines()[0]
    assert len(wide.split("  ")) > len(narrow.split("  "))


@pytest.mark.parametrize("width", [80, 120])
def test_runs_and_status_fit_the_terminal(db: Path, width: int) -> None:
    with closing(database.open_for_reading(db)) as conn:
        runs = history.recent_runs(conn, since_usec=None)
        statuses = history.unit_status(conn)
    assert widest(render.runs_table(runs, with_unit=True, width=width)) <= width
    assert widest(render.status_table(statuses, width=width)) <= width


def test_a_long_unit_name_is_shortened_with_an_ellipsis() -> None:
    rows = [["backup-of-the-whole-company-database-to-the-offsite-store.service", "3"]]
    text = render.table(["UNIT", "RUNS"], rows, right={1}, empty="-", width=30)
    assert widest(text) <= 30
    assert text.splitlines()[1].startswith("backup-of-the-whole-com…  ")


def test_the_width_is_none_for_wide_or_when_stdout_is_not_a_terminal() -> None:
    assert render.terminal_width(wide=True) is None
    assert render.terminal_width(wide=False) is None  # pytest captures stdout: not a terminal
