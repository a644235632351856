"""What the daily digest says, read from the store: the runs of 24 hours (one walk of the
runs index by time), the open problems and each unit's duration trend."""

from __future__ import annotations

import sqlite3

from observer.alerts.digest import DAY_USEC, DigestFacts, UnitDay, window
from observer.model import is_failure
from observer.reading import problems, stats
from observer.store import hosts, summary


def read(conn: sqlite3.Connection, host: str, until_usec: int) -> DigestFacts:
    """The digest of the 24 hours up to ``until_usec`` (runs that finished in them)."""
    since, until = window(until_usec)
    counts: dict[str, list[int]] = {}
    longest: dict[str, float] = {}
    for unit, started, finished, result, fails in conn.execute(
        "SELECT r.unit, r.started_usec, r.finished_usec, r.result, f.fails "
        "FROM runs r INDEXED BY runs_by_order LEFT JOIN run_findings f ON f.run_id = r.id "
        f"WHERE {summary.ORDER_KEY} >= ? AND {summary.ORDER_KEY} < ?",
        # A run that finished in the 24 hours started in them, or (a long one) the day before.
        (since - DAY_USEC, until),
    ):
        if finished is None or not since <= finished < until:
            continue
        runs, failures, findings = counts.setdefault(unit, [0, 0, 0])
        failed = is_failure(result)
        counts[unit] = [runs + 1, failures + int(failed), findings + int(fails is not None)]
        if started is not None:
            longest[unit] = max(longest.get(unit, 0.0), max(0, finished - started) / 1e6)
    units = [UnitDay(u, c[0], c[1], c[2], longest.get(u)) for u, c in sorted(counts.items())]
    trends = {}
    for unit in sorted(counts):
        ratio = stats.trend_ratio(*stats.trend_periods(conn, unit, until))
        if ratio is not None:
            trends[unit] = ratio
    several = hosts.several(conn)  # a central database: say which host's unit it is
    opened = {
        f"{unit} on {on}" if several else unit: kinds
        for (on, unit), kinds in problems.open_problems(conn).items()
    }
    return DigestFacts(host, until_usec, units, opened, trends)
