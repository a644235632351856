"""The trend column of `observer stats`: the 7-day median duration against the 30 days
before, as of the unit's newest end, computed by the code the alert rule ``slower`` uses."""

from __future__ import annotations

from pathlib import Path

from observer.alert_config import AlertRules
from observer.alerts.findings import Baseline, trend
from observer.model import Run, Source
from observer.reading import stats
from observer.store import database
from tests.unit.recorded_runs import NOW_USEC, SECOND, invocation

DAY = 86_400 * SECOND


def test_the_stats_trend_is_the_ratio_the_slower_finding_reports(tmp_path: Path) -> None:
    conn = database.open_for_writing(tmp_path / "observer.db")
    runs = [(n, NOW_USEC - (20 + n) * DAY, 10.0) for n in range(5)]
    runs += [(10 + n, NOW_USEC - n * DAY - 3600 * SECOND, 20.0) for n in range(5)]
    database.write_batch(conn, database.Batch(runs=[
        Run(unit="backup.service", invocation_id=invocation(n), host="h", source=Source.BUS,
            started_usec=at - int(seconds * SECOND), finished_usec=at, result="success")
        for n, at, seconds in runs
    ]))  # fmt: skip
    [unit] = stats.unit_stats(conn)
    assert unit.trend == 2.0
    # What the finding judged at the newest run's end (an hour before NOW_USEC).
    week, earlier = stats.trend_periods(conn, "backup.service", NOW_USEC - 3600 * SECOND + 1)
    finding = trend(Baseline(week_seconds=week, earlier_seconds=earlier), AlertRules())
    assert finding is not None
    assert "is 2.0 times that of the 30 days before (10.0s)" in finding.message
    [windowed] = stats.unit_stats(conn, since_usec=NOW_USEC - DAY)
    assert windowed.trend == 2.0  # whatever the window


def test_the_trend_stays_that_of_the_newest_end_when_no_run_follows(tmp_path: Path) -> None:
    conn = database.open_for_writing(tmp_path / "observer.db")
    # Successes long ago: as of now their periods are empty, as of the newest end they are not.
    runs = [(n, NOW_USEC - (200 + n) * DAY, 10.0) for n in range(3)]
    runs += [(10 + n, NOW_USEC - (180 + n) * DAY, 30.0) for n in range(3)]
    database.write_batch(conn, database.Batch(runs=[
        Run(unit="backup.service", invocation_id=invocation(n), host="h", source=Source.BUS,
            started_usec=at - int(seconds * SECOND), finished_usec=at, result="success")
        for n, at, seconds in runs
    ]))  # fmt: skip
    assert stats.trend_ratio(*stats.trend_periods(conn, "backup.service", NOW_USEC)) is None
    [unit] = stats.unit_stats(conn)
    assert unit.trend == 3.0
