"""Transient and template units in the metrics: folded into one series by ``[metrics] fold``,
so that any number of them keeps /metrics bounded."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path

import pytest

from observer.config import SYSTEMD_RUN_FOLD, load_config
from observer.metrics.collectors import RunCollector, render
from observer.metrics.snapshot import RunTally, Snapshot, UnitFold, read_unit_states
from observer.model import ConfigError, Run, Source
from observer.store import database
from tests.unit.recorded_runs import MINUTE, NOW_USEC, SECOND, invocation

DEFAULT = UnitFold(SYSTEMD_RUN_FOLD)


@pytest.mark.parametrize(
    "unit",
    [
        "run-u1234.service",
        "run-r0d6e5a3c9b8f4e2aa1b7c3d9e0f1a2b3.service",
        "run-p4242-i4243.service",
    ],
)
def test_systemd_runs_made_up_names_fold_into_one_unit_by_default(unit: str) -> None:
    assert DEFAULT(unit) == "run-*.service"
    assert DEFAULT(f"alice/{unit}") == "alice/run-*.service"


@pytest.mark.parametrize(
    "unit",
    [
        "run-redis.service",
        "run-parts.service",
        "run-u.service",
        "run-rdeadbeef.service",
        "backup@home.service",
        "run-u12.timer",
    ],
)
def test_names_an_admin_gives_keep_their_own_series_by_default(unit: str) -> None:
    assert DEFAULT(unit) == unit


def test_a_fold_without_a_name_is_shown_as_its_glob_and_the_first_match_wins() -> None:
    fold = UnitFold(["backup@*.service", "all=*@*.service"])
    assert fold("backup@home.service") == "backup@*.service"
    assert fold("sync@db.service") == "all"
    assert fold("backup.service") == "backup.service"
    assert UnitFold()("run-u1.service") == "run-u1.service"


def test_the_config_reads_fold_rules_and_names_the_line_of_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "observer.toml"
    path.write_text('[metrics]\nfold = ["backup@*.service", "jobs=job-*.service"]\n')
    assert load_config(path).metrics.fold == ("backup@*.service", "jobs=job-*.service")

    path.write_text('[metrics]\nlisten = ""\nfold = ["=run-*.service"]\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}:3: metrics.fold = [\"=run-*.service\"]: '=run-*.service' is not GLOB or "
        'NAME=GLOB (e.g. "backup@*.service")'
    )


def transient(n: int, result: str = "success", unit: str | None = None) -> Run:
    started = NOW_USEC + n * MINUTE
    return Run(
        unit=unit or f"run-r{n:032x}.service",
        invocation_id=invocation(n),
        host="host1",
        source=Source.BUS,
        started_usec=started,
        finished_usec=started + 2 * SECOND,
        result=result,
        exit_code="exited",
        exit_status=0 if result == "success" else 1,
    )


def store(tmp_path: Path, runs: list[Run]) -> Path:
    db = tmp_path / "observer.db"
    conn = database.open_for_writing(db)
    try:
        database.write_batch(conn, database.Batch(runs=runs))
    finally:
        conn.close()
    return db


def test_folded_units_show_the_newest_run_of_any_and_the_latest_success_and_failure(
    tmp_path: Path,
) -> None:
    runs = [transient(n, "exit-code" if n == 7 else "success") for n in range(1, 11)]
    db = store(tmp_path, [*runs, transient(11, unit="backup.service")])
    with closing(database.open_for_reading(db)) as conn:
        running = {("host1", "run-u99.service"): invocation(99)}
        units, _ = read_unit_states(conn, running, fold=DEFAULT)

    assert [u.unit for u in units] == ["backup.service", "run-*.service"]
    folded = units[1]
    assert folded.last_start_usec == runs[-1].started_usec
    assert folded.last_success_usec == runs[-1].finished_usec
    assert folded.last_failure_usec == runs[6].finished_usec
    assert folded.running


def test_the_tally_counts_folded_units_runs_together(tmp_path: Path) -> None:
    db = store(tmp_path, [])
    tally = RunTally(DEFAULT)
    with closing(database.open_for_reading(db)) as conn:
        tally.start(conn, pending_since_usec=0)
    conn = database.open_for_writing(db)
    try:
        database.write_batch(conn, database.Batch(runs=[transient(n) for n in range(1, 6)]))
    finally:
        conn.close()
    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [])

    assert tally.runs_by_result == {("host1", "run-*.service", "success"): 5}
    assert tally.durations()["host1", "run-*.service"].count == 5


def metrics_lines(db: Path, fold: UnitFold) -> list[str]:
    """The lines about units of the run metrics, every run counted, as the daemon serves them."""
    tally = RunTally(fold)
    with closing(database.open_for_reading(db)) as conn:
        tally.update(conn, [])
        units, timers = read_unit_states(conn, {}, fold=fold)
    snap = Snapshot("host1", tuple(units), tuple(timers), tally.runs_by_result, tally.durations())
    text = render(RunCollector(snap).collect()).decode()
    return [line for line in text.splitlines() if 'unit="' in line]


def test_a_thousand_transient_units_make_as_many_lines_as_one(tmp_path: Path) -> None:
    one = metrics_lines(store(tmp_path / "one", [transient(1)]), DEFAULT)
    db = store(tmp_path / "many", [transient(n) for n in range(1, 1001)])

    folded = metrics_lines(db, DEFAULT)
    unfolded = metrics_lines(db, UnitFold())

    assert len(folded) == len(one) < 40
    assert {re.search(r'unit="([^"]*)"', line)[1] for line in folded} == {"run-*.service"}  # type: ignore[index]
    assert len(unfolded) == 1000 * len(one)
