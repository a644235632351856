"""`observer diff RUN_A RUN_B`: how the definitions two runs started with differ."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from observer.model import ObserverError
from observer.reading import history
from observer.recording.definitions import (
    Definition,
    DefinitionFile,
    changes,
    decoded,
    text_diff,
)
from observer.store import definitions


class NoDefinitionError(ObserverError):
    """A run has no recorded definition."""


@dataclass(frozen=True, slots=True)
class FileDiff:
    """One part of the definition that differs, and its unified diff ('' when not kept)."""

    part: str  # unit file, drop-in, command, script
    path: str | None
    diff: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DefinitionDiff:
    """Two runs' definitions compared."""

    before: history.RecordedRun
    after: history.RecordedRun
    changes: tuple[str, ...]
    files: tuple[FileDiff, ...]


class FileDiffJson(TypedDict):
    part: str
    path: str | None
    diff: str
    note: str | None


class DefinitionDiffJson(TypedDict):
    before_run: int
    after_run: int
    changes: list[str]
    diffs: list[FileDiffJson]


def definition_diff(conn: sqlite3.Connection, before_id: str, after_id: str) -> DefinitionDiff:
    """How the definition of run ``after_id`` differs from that of run ``before_id``."""
    before, old = _run_definition(conn, before_id)
    after, new = _run_definition(conn, after_id)
    labels = (f"run {before.id}", f"run {after.id}")
    files = [*_file_diffs(conn, "unit file", _files(old.unit_file), _files(new.unit_file), labels)]
    files += _file_diffs(conn, "drop-in", old.dropins, new.dropins, labels)
    if old.command != new.command:
        diff = text_diff(old.command, new.command, *(f"{label}: ExecStart" for label in labels))
        files.append(FileDiff("command", None, diff))
    files += _file_diffs(conn, "script", old.scripts, new.scripts, labels)
    return DefinitionDiff(before, after, tuple(changes(old, new)), tuple(files))


def _run_definition(
    conn: sqlite3.Connection, run_id: str
) -> tuple[history.RecordedRun, Definition]:
    run = history.run_detail(conn, run_id).run
    stored = definitions.of_run(conn, run.invocation_id)
    if stored is None:
        raise NoDefinitionError(
            f"run {run_id!r} has no recorded definition (a run recorded before observer "
            "recorded definitions, one the bus did not see start, or a refused start)"
        )
    return run, stored.definition


def _files(file: DefinitionFile | None) -> tuple[DefinitionFile, ...]:
    return () if file is None else (file,)


def _file_diffs(
    conn: sqlite3.Connection,
    part: str,
    before: Sequence[DefinitionFile],
    after: Sequence[DefinitionFile],
    labels: tuple[str, str],
) -> list[FileDiff]:
    old = {f.path: f.digest for f in before}
    new = {f.path: f.digest for f in after}
    found = []
    for path in dict.fromkeys([*old, *new]):
        if old.get(path, "") == new.get(path, ""):
            continue
        before_text, after_text = (_text(conn, files, path) for files in (old, new))
        if before_text is None or after_text is None:
            note = "its text is not kept (unreadable, or longer than observer keeps)"
            found.append(FileDiff(part, path, "", note))
            continue
        names = (f"{label}: {path}" for label in labels)
        found.append(FileDiff(part, path, text_diff(before_text, after_text, *names)))
    return found


def _text(conn: sqlite3.Connection, files: dict[str, str | None], path: str) -> str | None:
    if path not in files:
        return ""
    return decoded(definitions.text(conn, files[path]))


def diff_text(found: DefinitionDiff) -> str:
    """The comparison as people read it: what changed, then each unified diff."""
    head = f"run {found.before.id} -> run {found.after.id} ({found.after.unit})"
    if not found.changes:
        return f"{head}: the same definition"
    lines = [f"{head}:", *(f"  {change}" for change in found.changes), ""]
    for file in found.files:
        if file.note:
            lines.append(f"{file.part} {file.path}: {file.note}")
        else:
            lines.append(file.diff.rstrip("\n"))
    return "\n".join(lines)


def diff_json(found: DefinitionDiff) -> DefinitionDiffJson:
    """The comparison for scripts."""
    return {
        "before_run": found.before.id,
        "after_run": found.after.id,
        "changes": list(found.changes),
        "diffs": [
            {"part": f.part, "path": f.path, "diff": f.diff, "note": f.note} for f in found.files
        ],
    }
