"""What the findings of one run are judged on, read with bounded queries and one file.

Each query walks an index of the unit's runs (``runs_by_unit_end``) within a time range or
up to a limit, so judging a run costs the same after a year of history as after a week.
Given a ``host``, only that host's runs of the unit count (``runs_by_unit_host_end``): on a
central database each host's unit is judged against its own history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from observer.alert_config import AlertRules
from observer.alerts.findings import Baseline, Finding, RunEvidence, judge
from observer.alerts.rules import FinishedRun
from observer.model import run_duration_seconds
from observer.reading import stats
from observer.store import summary

MTIME_SLACK_USEC = 1_000_000


def recent_successes(
    conn: sqlite3.Connection, unit: str, run: FinishedRun, limit: int, host: str | None = None
) -> tuple[list[float], list[int]]:
    """Durations and output lines of the unit's last ``limit`` successes before ``run``."""
    index, on_host, named = stats.of_host(host)
    rows = conn.execute(
        "SELECT r.started_usec, r.finished_usec, COALESCE(s.lines, 0) "
        f"FROM runs r INDEXED BY {index} "
        "LEFT JOIN output_stats s ON s.invocation_id = r.invocation_id "
        f"WHERE r.unit = ? {on_host}AND r.{summary.SUCCEEDED} AND r.started_usec IS NOT NULL "
        # The index's order: no sort (runs that ended in the same microsecond in any order).
        "AND r.finished_usec <= ? AND (r.finished_usec < ? OR r.id < ?) "
        "ORDER BY r.finished_usec DESC LIMIT ?",
        (unit, *named, run.finished_usec, run.finished_usec, run.id, limit),
    ).fetchall()
    durations = [run_duration_seconds(started, finished) for started, finished, _ in rows]
    kept = [(seconds, int(lines)) for seconds, (*_, lines) in zip(durations, rows, strict=True)
            if seconds is not None]  # fmt: skip
    return [seconds for seconds, _ in kept], [lines for _, lines in kept]


def failure_rate(
    conn: sqlite3.Connection, unit: str, run: FinishedRun, window_usec: int, host: str | None = None
) -> tuple[int, int]:
    """(failed, all) of the unit's finished runs in the window that ends with ``run``; a run
    whose findings failed it counts as failed, a start refused because a named unit failed
    not at all."""
    index, on_host, named = stats.of_host(host)
    row = conn.execute(
        f"SELECT COUNT(*), TOTAL(NOT r.{summary.SUCCEEDED} OR r.result IS NULL OR f.fails = 1) "
        f"FROM runs r INDEXED BY {index} LEFT JOIN run_findings f ON f.run_id = r.id "
        f"WHERE r.unit = ? {on_host}AND r.finished_usec > ? AND r.finished_usec <= ? "
        "AND NOT (r.result IS 'dependency' AND r.reason IS NOT NULL)",
        (unit, *named, run.finished_usec - window_usec, run.finished_usec),
    ).fetchone()
    return int(row[1]), int(row[0])


def run_findings(
    conn: sqlite3.Connection,
    unit: str,
    run: FinishedRun,
    rules: AlertRules,
    recent: tuple[list[float], list[int]],
    metrics_dir: Path | None,
    host: str | None = None,
) -> list[Finding]:
    """The findings of ``run``; ``recent`` as ``recent_successes`` read it."""
    lines: Sequence[bytes] = ()
    if rules.fail_output or rules.expect_output:
        lines = [
            bytes(row[0])
            for row in conn.execute(
                "SELECT message FROM output WHERE invocation_id = ? ORDER BY seq",
                (run.invocation_id,),
            )
        ]
    counted = conn.execute(
        "SELECT lines FROM output_stats WHERE invocation_id = ?", (run.invocation_id,)
    ).fetchone()
    week: list[float] = []
    earlier: list[float] = []
    if rules.trend_factor and run.succeeded:
        week, earlier = stats.trend_periods(conn, unit, run.finished_usec + 1, host)
    evidence = RunEvidence(
        succeeded=run.succeeded,
        duration_seconds=run.duration_seconds,
        lines=lines,
        output_lines=len(lines) if counted is None else int(counted[0]),
        metrics=_metrics(unit, run, metrics_dir) if rules.metric_checks else None,
    )
    return judge(evidence, Baseline(recent[0], recent[1], week, earlier), rules)


def _metrics(
    unit: str, run: FinishedRun, directory: Path | None
) -> Mapping[str, Sequence[float]] | None:
    """The samples of the metrics file the run wrote, by name; None if it wrote none."""
    if directory is None:
        return None
    # Imported here: prometheus_client is loaded only where metric checks are configured.
    from observer.metrics.job_metrics import (  # noqa: PLC0415
        UNIT_DIRECTORY_FILE,
        RejectedFile,
        parse_job_metrics,
    )

    names = dict.fromkeys([unit, unit.removesuffix(".service")])
    for name in names:
        for path in (directory / f"{name}.prom", directory / name / UNIT_DIRECTORY_FILE):
            try:
                info = path.stat()
                # A file's time is the kernel's coarse clock, a few ms behind the run's start.
                written_usec = info.st_mtime_ns // 1000 + MTIME_SLACK_USEC
                if run.started_usec is not None and written_usec < run.started_usec:
                    continue  # an older run's
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            try:
                families = parse_job_metrics(name, text)
            except (RejectedFile, ValueError):
                return {}  # written, but unreadable: every check is told what is missing
            samples: dict[str, list[float]] = {}
            for family in families:
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append(float(sample.value))
            return samples
    return None
