"""What `observer status` says of the database itself: rebuilt, or on a full filesystem."""

from __future__ import annotations

import os
import sqlite3

from observer.reading.render import local_time
from observer.store.database import directory_of, read_state
from observer.store.lost import REBUILT_KEY

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from observer.store.database import StrPath

# Less free than this and SQLite cannot grow its log: the daemon's writes fail.
FULL_BYTES = 1 << 20


def notes(conn: sqlite3.Connection, db_path: StrPath) -> list[str]:
    """Lines for `observer status` about the database (none while all is well)."""
    lines = []
    if rebuilt := read_state(conn, REBUILT_KEY):
        usec, _, why = rebuilt.partition(" ")
        when = local_time(int(usec)).strftime("%Y-%m-%d %H:%M:%S") if usec.isdigit() else "?"
        lines.append(
            f"the database was rebuilt from the journal at {when} ({why}): "
            "runs the journal no longer held then are not in it"
        )
    if (free := free_bytes(db_path)) is not None and free < FULL_BYTES:
        lines.append(
            f"the filesystem of {str(db_path)!r} is full ({free // 1024} KiB free): runs are "
            "not recorded until there is space; the journal keeps them and the daemon "
            "catches up then"
        )
    return lines


def free_bytes(db_path: StrPath) -> int | None:
    """Bytes free for root on the database's filesystem (None: cannot tell)."""
    try:
        info = os.statvfs(directory_of(db_path))
    except OSError:
        return None
    return info.f_bfree * info.f_frsize
