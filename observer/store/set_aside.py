"""Runs the database refused, kept in a file beside it: never lost, never retried for ever.

A run that cannot be written (a value the store cannot hold, a constraint it breaks) would
otherwise stop every write after it, and the journal's cursor with them. The daemon writes
the other runs, moves the cursor on, and appends the refused run here, with the error, one
JSON object a line: a file, not a table, so that it is kept even when the database is what
refuses. `observer set-aside` lists them; `observer status` says how many there are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from observer.model import Run
from observer.records import NamedTuple

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from observer.store.database import StrPath


class SetAside(NamedTuple):
    """One run (or part of a batch) the database refused, and why."""

    at_usec: int
    error: str
    unit: str | None
    invocation_id: str | None
    # The run as the daemon had it (every field, as JSON values), or what was left out.
    what: dict[str, object]


def set_aside_file(db_path: StrPath) -> str:
    """The file beside the database where refused runs are kept."""
    return f"{os.fspath(db_path)}.set-aside.jsonl"


def run_entry(run: Run, error: str, at_usec: int) -> SetAside:
    """A refused run, as it is kept."""
    what = run._asdict()
    what["source"] = str(run.source)
    return SetAside(at_usec, error, run.unit, run.invocation_id, what)


def append(path: StrPath, entries: list[SetAside]) -> None:
    """Add ``entries`` to the file (made readable by its owner and group only: it can hold
    what the database holds), flushed to disk before the cursor moves past them."""
    if not entries:
        return
    import json  # noqa: PLC0415 (`observer status` counts the entries without it)

    text = "".join(json.dumps(e._asdict(), separators=(",", ":")) + "\n" for e in entries)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: StrPath) -> Iterator[SetAside]:
    """The entries kept, oldest first (a line that is not one is skipped)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = list(f)
    except FileNotFoundError:
        return
    import json  # noqa: PLC0415

    for line in lines:
        try:
            entry = json.loads(line)
            yield SetAside(
                int(entry["at_usec"]), str(entry["error"]), entry.get("unit"),
                entry.get("invocation_id"), dict(entry.get("what") or {}),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue


def count(path: StrPath) -> int:
    """How many entries are kept."""
    return sum(1 for _ in read(path))
