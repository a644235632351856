"""The alert ledger's root-cause pass: starts refused because a named unit failed.

The refused starts are read from the store (the index of failed runs, from a mark kept in
``state``), judged by the pure rules of observer/alerts/causes.py and recorded through the
ledger, one transaction per failed unit. A failed unit is a unit on a host: on a central
database web1's failed mount took down web1's jobs, not web2's.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from observer.alerts import causes
from observer.alerts.rules import Alert, UnitAlertState
from observer.model import SUCCESS_RESULTS
from observer.store import summary

if TYPE_CHECKING:
    from observer.alerts.state import AlertLedger

# Starts refused because a named unit failed (the index of failed runs serves the walk).
_REFUSED = (
    f"{summary.FAILED} AND {summary.ORDER_KEY} >= ? AND result = 'dependency' "
    "AND reason IS NOT NULL"
)
_REFUSALS_LIMIT = 10_000
# The newest refused start (order key, run ID) the root-cause pass has seen.
REFUSALS_KEY = "alerts_refusals_seen"


def judge_refusals(ledger: AlertLedger, since: int, now_usec: int) -> list[Alert]:
    """Starts refused because a named unit failed, not seen yet: the failed unit's alert.

    Read as recorded, without waiting for output (a refusal has none), so that they are
    known before the failed unit's own run is judged.
    """
    conn = ledger.conn
    row = conn.execute("SELECT value FROM state WHERE key = ?", (REFUSALS_KEY,)).fetchone()
    mark_usec, mark_id = (since, 0) if row is None else map(int, str(row[0]).split(":"))
    by_cause: dict[tuple[str, str], list[causes.Refusal]] = {}
    for run_id, host, unit, cause, at in conn.execute(
        f"SELECT id, host, unit, reason, {summary.ORDER_KEY} FROM runs INDEXED BY "
        f"failed_by_order WHERE {_REFUSED} ORDER BY {summary.ORDER_KEY}, id LIMIT ?",
        (mark_usec, _REFUSALS_LIMIT),
    ).fetchall():
        if (at, run_id) > (mark_usec, mark_id) and ledger.observes(unit):
            by_cause.setdefault((host, cause), []).append(causes.Refusal(run_id, unit, cause, at))
        mark_usec, mark_id = max((mark_usec, mark_id), (at, run_id))
    alerts: list[Alert] = []
    with conn:
        for (host, cause), refusals in sorted(by_cause.items()):
            state = ledger.unit_state((host, cause), since, now_usec)
            failed = conn.execute(
                "SELECT id, result FROM runs INDEXED BY runs_by_unit_host_end "
                "WHERE unit = ? AND host = ? AND finished_usec <= ? "
                "ORDER BY finished_usec DESC LIMIT 1",
                (cause, host, refusals[0].at_usec),
            ).fetchone()
            cause_run = None if failed is None or failed[1] in SUCCESS_RESULTS else failed[0]
            rules = ledger.config.rules_for(cause)
            after, made = causes.judge_refusals(state, refusals, rules, now_usec, cause_run)
            ledger.record(host, state, after, made, now_usec)
            alerts += made
        conn.execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
            (REFUSALS_KEY, f"{mark_usec}:{mark_id}"),
        )
    return alerts


def judge_returns(ledger: AlertLedger, since: int, now_usec: int) -> list[Alert]:
    """A failed unit without runs of its own is back when a unit it took down starts."""
    conn = ledger.conn
    alerts: list[Alert] = []
    for cause, host in conn.execute(
        "SELECT p.unit, p.host FROM alert_problems p WHERE p.kind = 'dependency' "
        "AND NOT EXISTS (SELECT 1 FROM unit_summary u WHERE u.unit = p.unit "
        "AND u.host = p.host)"
    ).fetchall():
        with conn:
            state = ledger.unit_state((host, cause), since, now_usec)
            down = took_down(conn, host, state)
            returned = None
            for unit, last_refused in down.items():
                row = conn.execute(
                    f"SELECT id, {summary.ORDER_KEY} FROM runs INDEXED BY "
                    f"runs_by_unit_host_order WHERE unit = ? AND host = ? "
                    f"AND {summary.ORDER_KEY} > ? AND invocation_id IS NOT NULL "
                    f"ORDER BY {summary.ORDER_KEY} LIMIT 1",
                    (unit, host, last_refused),
                ).fetchone()
                if row is not None and (returned is None or row[1] < returned.at_usec):
                    returned = causes.Return(row[0], unit, row[1])
            rules = ledger.config.rules_for(cause)
            after, made = causes.judge_return(state, returned, sorted(down), rules)
            ledger.record(host, state, after, made, now_usec)
        alerts += made
    return alerts


def took_down(conn: sqlite3.Connection, host: str, state: UnitAlertState) -> dict[str, int]:
    """The units of ``host`` whose starts were refused because ``state.unit`` failed, since
    its problem opened, with the time of each one's last refusal."""
    down: dict[str, int] = {}
    for unit, at in conn.execute(
        f"SELECT unit, {summary.ORDER_KEY} FROM runs INDEXED BY failed_by_order "
        f"WHERE {_REFUSED} AND reason = ? AND host = ? LIMIT ?",
        (state.cause_usec or 0, state.unit, host, _REFUSALS_LIMIT),
    ):
        down[unit] = max(at, down.get(unit, at))
    return down
