"""What the alert rules (observer/alerts) found, as the readers show it: a run's findings
and each unit's open problems. Plain reads of the tables the alert service writes."""

from __future__ import annotations

import sqlite3

from observer.model import ProblemKind

# The problems alert_state keeps in a column each (``<kind>_usec``), in this order.
_STATE_COLUMNS = (ProblemKind.FAILING, ProblemKind.MISSED, ProblemKind.STALE)


def findings(text: str | None) -> tuple[tuple[str, str], ...]:
    """A run's findings as stored (JSON), as (kind, message); none when unreadable."""
    if not text:
        return ()
    import json  # noqa: PLC0415 (a listing without findings needs none)

    try:
        return tuple((str(f["kind"]), str(f["message"])) for f in json.loads(text))
    except (ValueError, TypeError, KeyError):
        return ()


def open_problems(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, ...]]:
    """The open alert problems of each (host, unit) (observer/alerts keeps them: a row per
    watched unit and host)."""
    found: dict[tuple[str, str], list[str]] = {}
    columns = ", ".join(f"{kind}_usec" for kind in _STATE_COLUMNS)
    for host, unit, *opened in conn.execute(
        f"SELECT host, unit, {columns} FROM alert_state WHERE COALESCE({columns}) IS NOT NULL"
    ):
        found[host, unit] = [
            kind for kind, usec in zip(_STATE_COLUMNS, opened, strict=True) if usec is not None
        ]
    for host, unit, kind in conn.execute(
        "SELECT host, unit, kind FROM alert_problems ORDER BY unit, host, kind"
    ):
        found.setdefault((host, unit), []).append(kind)
    return {key: tuple(kinds) for key, kinds in found.items()}
