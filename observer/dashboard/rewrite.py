"""One generation of the pages in a process of its own: what the daemon starts for a rewrite.

    python -m observer.dashboard.rewrite DATABASE DIRECTORY

A generation fills a heap that grows with the history (300 MiB at a million runs); in a
child, the daemon never holds it, and the child hands all of it back when it exits. It prints
what it did as one JSON line on stdout (``done``) and exits 0; a failure it can explain
(``DashboardError``, a database it cannot read) it prints as ``{"error": ...}`` and exits 1.
Anything else, a traceback, goes to stderr, which the daemon logs. SIGTERM stops it at its
next page, the overview left as it was (``{"stopped": true}``, exit status 2).
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from observer.dashboard import pages
from observer.model import ObserverError
from observer.store import database

STOPPED = 2


def done(report: pages.Report) -> dict[str, int]:
    """What the daemon reads of a generation: its counts and the child's peak RSS (KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "written": report.written,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "day_pages": report.day_pages,
        "peak_kib": peak,
    }


def main(argv: list[str] | None = None) -> int:
    db, directory = (sys.argv[1:] if argv is None else argv)[:2]
    asked: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: asked.append(signum))
    try:
        report = _generate(Path(db), Path(directory), lambda: bool(asked))
    except pages.Stopped:
        print(json.dumps({"stopped": True}), flush=True)
        return STOPPED
    except ObserverError as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return 1
    print(json.dumps(done(report)), flush=True)
    return 0


def _generate(db: Path, directory: Path, should_stop: Callable[[], bool]) -> pages.Report:
    conn = database.open_for_reading(db)
    try:
        return pages.generate(conn, directory, should_stop=should_stop)
    except sqlite3.Error as e:
        raise ObserverError(f"cannot read the database {str(db)!r}: {e}") from e
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
