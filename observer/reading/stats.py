"""Per-unit statistics: counts, success rate, duration and cost percentiles (read-only).

Over all recorded runs they come from each unit's kept summary (observer/store/summary.py); over
a window (``since_usec``) they are counted from the unit's runs in index order. The trend is
the kept one, as of the unit's newest end, whatever the window.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from observer.model import is_skipped, is_success
from observer.records import NamedTuple
from observer.store import summary

# Spelled as the indexes are (observer/store/summary.py), so that the queries walk them.
_ORDER_KEY = summary.ORDER_KEY
DAY_USEC = summary.DAY_USEC
# The trend's periods, read as the alert rule ``slower`` reads them (one code path).
TREND_LIMIT = summary.TREND_LIMIT
of_host = summary.of_host
success_seconds_between = summary.success_seconds_between
trend_periods = summary.trend_periods


class UnitStats(NamedTuple):
    """How a unit's finished runs went, over a window or all recorded history."""

    unit: str
    runs: int  # finished runs: successes, failures and skipped starts
    successes: int
    failures: int
    success_rate: float | None  # successes of successes and failures; None without them
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    duration_max_seconds: float | None
    last_success_usec: int | None
    last_failure_usec: int | None
    consecutive_failures: int  # the current streak, over all recorded runs
    skipped: int = 0  # condition, exec-condition: neither success nor failure
    cpu_p50_seconds: float | None = None
    cpu_p95_seconds: float | None = None
    memory_peak_p50_bytes: int | None = None
    memory_peak_p95_bytes: int | None = None
    host: str = ""  # the host whose runs these are (one row per host and unit)
    # The median duration of the successes of the 7 days up to the unit's newest end over
    # that of the 30 days before (the alert rule ``slower`` compares the same at each run's
    # end): None without 3 of each.
    trend: float | None = None


def unit_stats(
    conn: sqlite3.Connection,
    unit: str | None = None,
    *,
    since_usec: int | None = None,
    host_matches: Callable[[str], bool] | None = None,
) -> list[UnitStats]:
    """Per host and unit (or for one unit): counts, success rate, duration percentiles and
    trend.

    Over all recorded runs this reads each unit's kept summary; with ``since_usec`` it
    counts the unit's runs in the window (see ``_window_stats``). The trend is the kept one,
    of the 37 days up to the unit's newest end, whatever the window.
    """
    kept = summaries(conn, None if unit is None else [unit], host_matches)
    if since_usec is None:
        return [stats_from(s) for s in kept]
    return [_window_stats(conn, s, since_usec) for s in kept]


def trend_ratio(week: Sequence[float], earlier: Sequence[float]) -> float | None:
    """The last 7 days' median duration over that of the 30 days before (3 runs of each)."""
    return summary.trend_of(summary.trend_median(week), summary.trend_median(earlier))


def summaries(
    conn: sqlite3.Connection,
    units: Sequence[str] | None,
    host_matches: Callable[[str], bool] | None = None,
) -> list[summary.UnitSummary]:
    """The kept summaries of ``units`` (default: all), a row per host; an empty one for a
    unit of ``units`` without runs (on the hosts ``host_matches`` accepts)."""
    if units is None:
        return summary.read(conn, host_matches=host_matches)
    kept: dict[str, list[summary.UnitSummary]] = {}
    for found in summary.read(conn, units, host_matches):
        kept.setdefault(found.unit, []).append(found)
    return [s for unit in units for s in kept.get(unit) or [_empty(unit)]]


def _empty(unit: str) -> summary.UnitSummary:
    return summary.UnitSummary(unit, 0, 0, 0, None, None, None, None, 0, None, None, None, 0)


def stats_from(kept: summary.UnitSummary) -> UnitStats:
    return UnitStats(
        unit=kept.unit,
        runs=kept.runs,
        successes=kept.successes,
        failures=kept.failures,
        success_rate=_rate(kept.successes, kept.failures),
        duration_p50_seconds=kept.duration_p50_seconds,
        duration_p95_seconds=kept.duration_p95_seconds,
        duration_max_seconds=kept.duration_max_seconds,
        last_success_usec=kept.last_success_usec,
        last_failure_usec=kept.last_failure_usec,
        consecutive_failures=kept.consecutive_failures,
        skipped=kept.skipped,
        cpu_p50_seconds=kept.cpu_p50_seconds,
        cpu_p95_seconds=kept.cpu_p95_seconds,
        memory_peak_p50_bytes=kept.memory_peak_p50_bytes,
        memory_peak_p95_bytes=kept.memory_peak_p95_bytes,
        host=kept.host,
        trend=kept.trend,
    )


def _rate(successes: int, failures: int) -> float | None:
    return successes / (successes + failures) if successes + failures else None


def _window_stats(
    conn: sqlite3.Connection, kept: summary.UnitSummary, since_usec: int
) -> UnitStats:
    """A unit's finished runs that started in the window, read in index order, newest first.

    Durations are those of the window's newest ``summary.DURATION_WINDOW`` runs, as over
    all runs; the failure streak is the current one, over all runs.
    """
    runs = successes = skipped = 0
    durations: list[float] = []
    cpu: list[float] = []
    memory: list[int] = []
    last_success: int | None = None
    last_failure: int | None = None
    for started, finished, result, cpu_seconds, memory_peak in conn.execute(
        "SELECT r.started_usec, r.finished_usec, r.result, r.cpu_seconds, r.memory_peak_bytes "
        "FROM runs r INDEXED BY runs_by_unit_host_order WHERE r.unit = ? AND r.host = ? "
        f"AND {_ORDER_KEY} >= ? AND r.finished_usec IS NOT NULL ORDER BY {summary.NEWEST_FIRST}",
        (kept.unit, kept.host, since_usec),
    ):
        runs += 1
        if cpu_seconds is not None and len(cpu) < summary.DURATION_WINDOW:
            cpu.append(float(cpu_seconds))
        if memory_peak is not None and len(memory) < summary.DURATION_WINDOW:
            memory.append(int(memory_peak))
        if is_skipped(result):
            skipped += 1
            continue
        if is_success(result):
            successes += 1
            last_success = finished if last_success is None else max(finished, last_success)
        else:
            last_failure = finished if last_failure is None else max(finished, last_failure)
        if started is not None and len(durations) < summary.DURATION_WINDOW:
            durations.append(max(0, finished - started) / 1e6)
    durations.sort()
    cpu.sort()
    memory.sort()
    memory_p50, memory_p95 = summary.percentile(memory, 50), summary.percentile(memory, 95)
    return UnitStats(
        unit=kept.unit,
        runs=runs,
        successes=successes,
        failures=runs - successes - skipped,
        success_rate=_rate(successes, runs - successes - skipped),
        duration_p50_seconds=summary.percentile(durations, 50),
        duration_p95_seconds=summary.percentile(durations, 95),
        duration_max_seconds=durations[-1] if durations else None,
        last_success_usec=last_success,
        last_failure_usec=last_failure,
        consecutive_failures=kept.consecutive_failures,
        skipped=skipped,
        cpu_p50_seconds=summary.percentile(cpu, 50),
        cpu_p95_seconds=summary.percentile(cpu, 95),
        memory_peak_p50_bytes=None if memory_p50 is None else int(memory_p50),
        memory_peak_p95_bytes=None if memory_p95 is None else int(memory_p95),
        host=kept.host,
        trend=kept.trend,
    )
