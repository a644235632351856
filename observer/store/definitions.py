"""What defined each run, in the store: written with the daemon's batches, read by the CLI,
the alerts and the dashboard (the tables: schema 8 in schema.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from observer.recording.definitions import Definition, definition_from_json, definition_json
from observer.records import NamedTuple

# A run whose texts were all read before: an immutable default, the record's field being one.
_NO_TEXTS: Mapping[str, bytes] = MappingProxyType({})


class RunDefinition(NamedTuple):
    """The definition a run started with, and the texts read anew to make it."""

    invocation_id: str
    unit: str
    host: str
    definition: Definition
    texts: Mapping[str, bytes] = _NO_TEXTS


class StoredDefinition(NamedTuple):
    """A run's definition as stored, with its unit's previous run's (None: none known)."""

    definition_id: int
    definition: Definition
    previous_id: int | None
    previous: Definition | None

    @property
    def changed(self) -> bool:
        """Whether the run is the first after a change of its unit's definition."""
        return self.previous_id is not None and self.previous_id != self.definition_id


def write_definitions(conn: sqlite3.Connection, runs: Iterable[RunDefinition]) -> None:
    """Store what defined each run (in the caller's transaction); a text only when new."""
    for run in runs:
        conn.executemany(
            "INSERT OR IGNORE INTO definition_texts (digest, text) VALUES (?, ?)",
            run.texts.items(),
        )
        digest = run.definition.digest
        conn.execute(
            "INSERT OR IGNORE INTO definitions (digest, definition) VALUES (?, ?)",
            (digest, json.dumps(definition_json(run.definition), sort_keys=True)),
        )
        [definition_id] = conn.execute(
            "SELECT id FROM definitions WHERE digest = ?", (digest,)
        ).fetchone()
        conn.execute(
            "INSERT OR IGNORE INTO run_definitions (invocation_id, definition_id, previous_id) "
            "VALUES (?, ?, ?)",
            (run.invocation_id, definition_id, _previous(conn, run)),
        )


def _previous(conn: sqlite3.Connection, run: RunDefinition) -> int | None:
    """The definition of the unit's newest other run whose definition is known."""
    row = conn.execute(
        "SELECT d.definition_id FROM runs r JOIN run_definitions d "
        "ON d.invocation_id = r.invocation_id "
        "WHERE r.unit = ? AND r.host = ? AND r.invocation_id != ? "
        "ORDER BY r.started_usec DESC, r.id DESC LIMIT 1",
        (run.unit, run.host, run.invocation_id),
    ).fetchone()
    return None if row is None else int(row[0])


def definition(conn: sqlite3.Connection, definition_id: int) -> Definition | None:
    """A stored definition by its ID."""
    row = conn.execute(
        "SELECT definition FROM definitions WHERE id = ?", (definition_id,)
    ).fetchone()
    return None if row is None else definition_from_json(json.loads(row[0]))


def of_run(conn: sqlite3.Connection, invocation_id: str | None) -> StoredDefinition | None:
    """What defined a run; None when it was not recorded (a run from before, or refused)."""
    if invocation_id is None:
        return None
    row = conn.execute(
        "SELECT definition_id, previous_id FROM run_definitions WHERE invocation_id = ?",
        (invocation_id,),
    ).fetchone()
    if row is None:
        return None
    current = definition(conn, int(row[0]))
    if current is None:
        return None
    previous = None if row[1] is None else definition(conn, int(row[1]))
    return StoredDefinition(int(row[0]), current, row[1], previous)


def digest_of_run(conn: sqlite3.Connection, invocation_id: str | None) -> str | None:
    """The digest of the definition a run started with (None: not recorded)."""
    row = conn.execute(
        "SELECT f.digest FROM run_definitions d JOIN definitions f ON f.id = d.definition_id "
        "WHERE d.invocation_id = ?",
        (invocation_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def changed_runs(conn: sqlite3.Connection, invocation_ids: Iterable[str | None]) -> set[str]:
    """Which of these runs are the first after a change of their unit's definition."""
    wanted = [i for i in invocation_ids if i is not None]
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT invocation_id FROM run_definitions WHERE invocation_id IN ({marks}) "
            "AND previous_id IS NOT NULL AND previous_id != definition_id",
            chunk,
        )
        found.update(str(row[0]) for row in rows)
    return found


def text(conn: sqlite3.Connection, digest: str | None) -> bytes | None:
    """A kept text by its digest; None when not kept (unreadable, or too long)."""
    if digest is None:
        return None
    row = conn.execute("SELECT text FROM definition_texts WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else bytes(row[0])
