"""What the alert rules (observer/alerts) found, as the readers show it: a run's findings
and each unit's open problems. Plain reads of the tables the alert service writes."""

from __future__ import annotations

import json
import sqlite3


def findings(text: str | None) -> tuple[tuple[str, str], ...]:
    """A run's findings as stored (JSON), as (kind, message); none when unreadable."""
    if not text:
        return ()
    try:
        return tuple((str(f["kind"]), str(f["message"])) for f in json.loads(text))
    except (ValueError, TypeError, KeyError):
        return ()


def open_problems(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    """Each unit's open alert problems (observer/alerts keeps them: a row per watched unit)."""
    found: dict[str, list[str]] = {}
    for unit, *opened in conn.execute(
        "SELECT unit, failing_usec, missed_usec, stale_usec FROM alert_state "
        "WHERE COALESCE(failing_usec, missed_usec, stale_usec) IS NOT NULL"
    ):
        kinds = ("failing", "missed", "stale")
        found[unit] = [kind for kind, usec in zip(kinds, opened, strict=True) if usec is not None]
    for unit, kind in conn.execute("SELECT unit, kind FROM alert_problems ORDER BY unit, kind"):
        found.setdefault(unit, []).append(kind)
    return {unit: tuple(kinds) for unit, kinds in found.items()}
