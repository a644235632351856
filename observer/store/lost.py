"""A database lost under the running daemon: deleted, replaced or corrupted.

SQLite keeps writing the file it opened: a deleted database takes every write (into an
inode no path names any more) and a page overwritten with garbage stays unseen while the
writer's cache holds it. The store checks the file before every write (a stat and the
first 100 bytes: microseconds), and treats SQLite's own "malformed" and "not a database"
the same way. The daemon then rebuilds the database from the journal, the source of truth.

The rebuilt database is kept in rollback-journal mode until the daemon restarts (then WAL
again): connections still open to the lost file know its log as ``<path>-wal``, and SQLite
deletes that by name when the last of them closes, which would take the new one's.
"""

from __future__ import annotations

import os
import sqlite3
import time

from observer.model import StoreError

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path  # `observer status` reads REBUILT_KEY: it starts without pathlib

_MAGIC = b"SQLite format 3\x00"
# The state row saying when and why the database was rebuilt (`observer status` shows it):
# "<usec> <why>".
REBUILT_KEY = "database_rebuilt"


class DatabaseLost(StoreError):
    """The database file is gone, replaced or corrupt: writing to it again cannot help."""

    def __init__(self, message: str, *, corrupt: bool) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class WatchedFile:
    """The database file the writer opened, held open beside SQLite's own descriptors.

    Held, not opened for each check: closing any descriptor of a file drops every POSIX
    lock this process holds on it, SQLite's included (database.py says why that matters).
    So it is opened after the connection and closed only after the connection is.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        """Close it: only once the connection to the file is closed."""
        os.close(self._fd)

    def check(self) -> None:
        """Raise DatabaseLost unless the path still names the file opened, whole and an
        SQLite database (called on the writer's thread: no checkpoint runs meanwhile)."""
        path = self.path
        try:
            now = os.stat(path)
        except FileNotFoundError:
            raise DatabaseLost(f"the database {str(path)!r} was deleted", corrupt=False) from None
        except OSError:
            return  # unreadable for now (permissions, I/O): the write itself will say
        opened = os.fstat(self._fd)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            raise DatabaseLost(
                f"the database {str(path)!r} was replaced by another file", corrupt=False
            )
        trouble = _header_trouble(os.pread(self._fd, 100, 0), opened.st_size)
        if trouble is not None:
            raise DatabaseLost(f"the database {str(path)!r} is corrupt: {trouble}", corrupt=True)


def _header_trouble(header: bytes, size: int) -> str | None:
    """What is wrong with a database file's header, given its size (None: nothing seen)."""
    if len(header) < 100 or not header.startswith(_MAGIC):
        return "its header is not SQLite's" if header else "it is empty"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only when written with the current change counter.
    if header[24:28] == header[92:96] and size < pages * page_size:
        return f"it holds {size} bytes where its header says {pages * page_size}"
    return None


def is_corruption(e: BaseException) -> bool:
    """Whether SQLite says the file is corrupt or not a database at all."""
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    name = getattr(e, "sqlite_errorname", "")
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(e)


def move_aside(path: Path, now: float | None = None) -> Path:
    """Move a corrupt database (and its -wal and -shm) to ``<name>.corrupt-<time>``; never
    deleted: what it holds may still be read."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.rename(f"{path}{suffix}", f"{aside}{suffix}")
        except FileNotFoundError:
            continue
    return aside


def remove_stale_wal(path: Path) -> None:
    """Remove the -wal and -shm a deleted database left at ``path``: SQLite would replay
    that log into the new database opened there."""
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            continue
