"""Runs of `observer run` whose wrapper is gone (SIGKILL, the OOM killer): closed as interrupted.

A running `observer run` holds an exclusive lock (flock) on its mark of life,
``<spool>/live/<invocation ID>.live``: a small JSON file naming the run, the database, and
the wrapper's pid and process start time (for people), touched every HEARTBEAT_SECONDS. The
kernel drops the lock when the process ends, however it ends, so an importer (the daemon,
the next `observer run`) that can take the lock knows for sure that the wrapper is gone: no
reused pid can pass for it, and it holds where the importer cannot see the wrapper's /proc
entry (the installed daemon runs with ProtectProc=invisible) or shares no pid namespace
with it. The run is then closed with result ``interrupted`` at the mark's last touch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import stat
from pathlib import Path

from observer import logs
from observer.model import Run
from observer.run import spool

# A run's end as the store records it when its wrapper died (as for units whose systemd died).
RESULT_INTERRUPTED = "interrupted"
HEARTBEAT_SECONDS = 10.0
MARK_FORMAT = 1
MAX_MARK_BYTES = 64 * 1024


class LifeMark:
    """The mark of life of one running `observer run`: held locked until the run is recorded."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def create(cls, spool_dir: Path, run: Run, db_path: Path) -> LifeMark:
        """Write the mark under a hidden name, lock it, then give it its name."""
        directory = spool.make_spool_dir(spool_dir, spool.LIVE_DIR)
        path = directory / f"{run.invocation_id}{spool.LIVE_SUFFIX}"
        temporary = directory / f".{run.invocation_id}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o640)
        try:
            spool.adopt(temporary, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else knows the name yet
            document = {
                "format": MARK_FORMAT,
                "db": str(db_path.absolute()),
                "run": spool.encode_run(run),
                "pid": os.getpid(),
                "start_ticks": _start_ticks(),
            }
            os.write(fd, json.dumps(document, separators=(",", ":")).encode())
            os.replace(temporary, path)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        return cls(fd, path)

    def beat(self) -> None:
        """Say the wrapper is still there (the mark's time is when it was last seen)."""
        with contextlib.suppress(OSError):
            os.utime(self.fd)

    def end(self) -> None:
        """The run is recorded: remove the mark, then let go of its lock."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = -1


def close_gone(
    conn: sqlite3.Connection, spool_dir: Path, db_path: Path, reported: set[str] | None = None
) -> list[Run]:
    """Close the runs of ``db_path`` whose wrapper is gone; return those it closed."""
    directory = spool_dir / spool.LIVE_DIR
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    reported = set() if reported is None else reported
    target = spool.same_file_key(db_path)
    closed: list[Run] = []
    for name in names:
        if name.startswith(".") or not name.endswith(spool.LIVE_SUFFIX):
            continue
        invocation_id = name.removesuffix(spool.LIVE_SUFFIX)
        if (spool_dir / f"{invocation_id}.json").exists():
            continue  # its wrapper spooled its end: the import brings it in first
        path = directory / name
        try:
            closed.extend(_close_if_gone(conn, path, invocation_id, target))
        except FileNotFoundError:
            continue  # the wrapper ended meanwhile
        except OSError as e:
            if str(path) not in reported:
                reported.add(str(path))
                logs.warning(__name__, "cannot check the mark of life %s: %s", path, e)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            logs.warning(__name__, "mark of life %s is unreadable (%s); renamed to *.bad", path, e)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_suffix(".bad"))
    return closed


def _close_if_gone(
    conn: sqlite3.Connection, path: Path, invocation_id: str, target: str
) -> list[Run]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # its wrapper holds it: the run goes on
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MARK_BYTES:
            raise ValueError("not a mark of life")
        document = json.loads(os.read(fd, MAX_MARK_BYTES))
        if not isinstance(document, dict) or document.get("format") != MARK_FORMAT:
            raise ValueError("not a mark of life of a known format")
        run = spool.decode_run(document["run"])
        if run.invocation_id != invocation_id or not isinstance(document["db"], str):
            raise ValueError("a mark of life of another run")
        if spool.same_file_key(Path(document["db"])) != target:
            return []  # another database's importer closes it
        last_seen = max(info.st_mtime_ns // 1000, run.started_usec or 0)
        ended = run._replace(finished_usec=last_seen, result=RESULT_INTERRUPTED)
        closed = spool.write_record(conn, spool.RunRecord(ended))
        for run in closed:
            logs.warning(
                __name__, "run %s of %s: its `observer run` (pid %s) is gone; closed as %s",
                run.key[:12], run.unit, document.get("pid"), RESULT_INTERRUPTED,
            )  # fmt: skip
        path.unlink(missing_ok=True)  # still locked: no wrapper uses this name again
        return closed
    finally:
        os.close(fd)


def _start_ticks() -> int | None:
    """This process's start time in clock ticks since boot (/proc/self/stat, field 22)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
