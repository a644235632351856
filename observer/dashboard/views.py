"""What the dashboard's pages show, as plain records: pure, no I/O, no markup."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from observer.dashboard import charts
from observer.model import exit_text
from observer.output import dropped_marker, lost_marker, printable
from observer.reading import history
from observer.reading.render import clock_time, count, percent, table_time
from observer.reading.stats import UnitStats
from observer.spans import human_duration

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def unit_page(unit: str, page: int = 1) -> str:
    """A file name for a unit's page, safe for any unit name: readable part plus a hash."""
    slug = _UNSAFE_IN_NAME.sub("_", unit)[:48]
    digest = hashlib.sha256(unit.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"unit-{slug}-{digest}{'' if page == 1 else f'-{page}'}.html"


def run_page(run_id: int) -> str:
    return f"run-{int(run_id)}.html"


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    href: str
    started: str
    duration: str
    result: str
    kind: str
    exit: str
    trigger: str
    truncated: bool
    findings: str = ""  # the kinds of its findings ("fail-output, fast")
    findings_title: str = ""  # their messages, for the tooltip


@dataclass(frozen=True, slots=True)
class SparklineView:
    """A sparkline as the overview draws it: one SVG path per kind of bar."""

    width: int
    height: int
    title: str
    paths: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit: str
    href: str
    health: str  # failing, running, ok, idle
    last_result: str
    result_kind: str  # ok, fail, running, unknown: the CSS class
    last_run: str
    last_run_href: str | None
    next_run: str
    success_rate: str
    consecutive_failures: int
    p95: str
    sparkline: SparklineView
    problems: str = ""  # its open alert problems ("failing, rate")


@dataclass(frozen=True, slots=True)
class OutputRow:
    time: str
    priority: str
    priority_class: str
    text: str
    dropped: bool = False


def health(status: history.UnitStatus) -> str:
    """failing (its newest finished run failed), running, ok, or idle (never finished)."""
    if status.consecutive_failures > 0:
        return "failing"
    if status.running:
        return "running"
    if status.success_rate is not None:
        return "ok"
    return "idle"


def overview_order(unit: str, consecutive_failures: int) -> tuple[int, int, str]:
    """Failing units first, the longest failure streak first, then by name."""
    return (0 if consecutive_failures > 0 else 1, -consecutive_failures, unit)


def run_kind(run: history.RecordedRun) -> str:
    if run.running:
        return "running"
    if run.skipped:
        return "skipped"
    return "fail" if run.failed else "ok"


def _run_title(run: history.RecordedRun) -> str:
    result = "running" if run.running else run.result or "unknown result"
    return (
        f"run {run.id}: {table_time(run.started_usec)}, "
        f"{human_duration(run.duration_seconds)}, {result}"
    )


def sample(run: history.RecordedRun) -> charts.Sample:
    return charts.Sample(
        started_usec=run.started_usec,
        seconds=run.duration_seconds,
        kind=run_kind(run),
        title=_run_title(run),
        href=run_page(run.id),
    )


def unit_row(
    status: history.UnitStatus,
    stats: UnitStats,
    runs: list[history.RecordedRun],
    sparkline_runs: int,
) -> UnitRow:
    """A unit's row of the overview, from its status, stats and newest runs (newest first)."""
    newest = runs[0] if runs else None
    spark = charts.sparkline(
        [sample(r) for r in reversed(runs[: max(0, sparkline_runs)])], sparkline_runs
    )
    return UnitRow(
        unit=status.unit,
        href=unit_page(status.unit),
        health=health(status),
        last_result=status.last_result or "-",
        result_kind=run_kind(newest) if newest is not None else "unknown",
        last_run=table_time(status.last_started_usec),
        last_run_href=None if newest is None else run_page(newest.id),
        next_run=table_time(status.next_run_usec),
        success_rate=percent(status.success_rate),
        consecutive_failures=status.consecutive_failures,
        p95=human_duration(stats.duration_p95_seconds),
        sparkline=SparklineView(spark.width, spark.height, spark.title, tuple(spark.paths)),
        problems=", ".join(status.problems),
    )


def run_row(run: history.RecordedRun) -> RunRow:
    return RunRow(
        id=run.id,
        href=run_page(run.id),
        started=table_time(run.started_usec),
        duration=human_duration(run.duration_seconds),
        result="running" if run.running else run.result or "-",
        kind=run_kind(run),
        exit=exit_text(run.exit_status, run.signal),
        trigger=run.trigger or "-",
        truncated=run.output_truncated,
        findings=", ".join(kind for kind, _ in run.findings),
        findings_title="; ".join(message for _, message in run.findings),
    )


def output_rows(detail: history.RunDetail, limit: int) -> list[OutputRow]:
    """A run's output lines as its page shows them: at most ``limit``, its start and end."""
    entries = list(detail.output)
    hidden: list[history.LoggedLine | history.DroppedLines | history.LostLines] = []
    if len(entries) > limit:
        # Keep the start and the end, as the output budget does.
        head, tail = limit // 2, limit - limit // 2
        hidden = entries[head : len(entries) - tail]
        entries = [*entries[:head], *entries[len(entries) - tail :]]
    rows = []
    for i, entry in enumerate(entries):
        if hidden and i == limit // 2:
            stored = sum(1 for e in hidden if isinstance(e, history.LoggedLine))
            rows.append(
                OutputRow(
                    "", "", "", f"[... {count(stored, 'more line')} not shown here: "
                    f"'observer show {detail.run.id}' prints them all ...]", dropped=True,
                )
            )  # fmt: skip
        if isinstance(entry, history.DroppedLines):
            rows.append(OutputRow("", "", "", dropped_marker(entry.lines), dropped=True))
            continue
        if isinstance(entry, history.LostLines):
            rows.append(OutputRow("", "", "", lost_marker(entry.lines), dropped=True))
            continue
        priority = entry.priority
        rows.append(
            OutputRow(
                time=clock_time(entry.realtime_usec),
                priority=_PRIORITIES[priority] if 0 <= priority < 8 else str(priority),
                priority_class=f"p{priority}" if 0 <= priority < 8 else "",
                text=printable(entry.message),
            )
        )
    return rows
