"""The unit names completion offers: those recorded in the database, read in one query."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from observer.model import StoreError
from observer.store import database


def recorded_units(db: Path | None = None) -> list[str]:
    """Every unit with a recorded run, sorted; nothing when the database cannot be read.

    Completion runs this at each Tab: a missing, unreadable or foreign database is no error
    there, it just offers no names.
    """
    try:
        conn = database.open_for_reading(db or database.default_read_file())
    except (StoreError, sqlite3.Error, OSError):
        return []
    try:
        conn.execute("PRAGMA busy_timeout = 200")
        return [row[0] for row in conn.execute("SELECT unit FROM unit_summary ORDER BY unit")]
    except sqlite3.Error:
        return []
    finally:
        conn.close()
