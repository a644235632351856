"""Runs of `observer run` on their way into the store, and the files kept beside it.

A run that cannot be written into the database (read-only, full, locked, corrupted,
permission denied) is written as one JSON file into the spool directory; the next
`observer run` and the daemon move spooled runs into the store. A run's invocation ID is
the store's key and a spool file is removed only after the transaction holding its run
committed, so a run arrives exactly once even when two importers race or one is killed.

The spool is beside the database for every user: root's `observer run` and the installed
daemon (user ``observer``) share ``/var/lib/observer/spool/``. What root writes there is
handed to the owner of the directory it is in, so that the daemon can read and remove it.
Anyone who can write the spool can put files there: each is read without following links,
checked whole, and one that is bad is set aside (``*.bad``) without holding up the others.
"""

from __future__ import annotations

import binascii
import errno
import json
import math
import os
import sqlite3
import stat
from pathlib import Path

from observer import logs
from observer.model import Run, Source, StoreError, TimerState
from observer.store.database import Batch, OutputCounts, StoredLine, write_batch

SPOOL_FORMAT = 1
# What a job may leave in JOB_METRICS_FILE; more is ignored (with a warning).
MAX_METRICS_BYTES = 1024 * 1024
# How many spooled runs one `observer run` moves into the store, so it never lingers long.
IMPORT_BATCH = 50
# A spooled run holds at most the output budget (base64): a larger file is not one of ours.
MAX_SPOOL_FILE_BYTES = 64 * 1024 * 1024
_INT64 = (-(2**63), 2**63 - 1)
# Where each running `observer run` keeps its mark of life (observer/run/liveness.py).
LIVE_DIR = "live"
LIVE_SUFFIX = ".live"


class RunRecord:
    """Everything `observer run` records about one run of a job (a plain class: a dataclass
    would cost every cron job half a millisecond to create)."""

    __slots__ = ("counts", "lines", "metrics", "run", "timer")

    def __init__(
        self,
        run: Run,
        lines: tuple[StoredLine, ...] = (),
        counts: OutputCounts | None = None,
        timer: TimerState | None = None,
        metrics: bytes | None = None,  # what the job wrote to JOB_METRICS_FILE
    ) -> None:
        self.run = run
        self.lines = lines
        self.counts = counts
        self.timer = timer
        self.metrics = metrics

    def with_metrics(self, metrics: bytes | None) -> RunRecord:
        return RunRecord(self.run, self.lines, self.counts, self.timer, metrics)

    def _values(self) -> tuple[object, ...]:
        return self.run, self.lines, self.counts, self.timer, self.metrics

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunRecord) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"RunRecord{self._values()!r}"


def default_spool_dir(db_path: Path, configured: str = "") -> Path:
    """``$OBSERVER_SPOOL``, else the configured one, else ``spool/`` beside the database.

    The same for root and for the daemon's user: both find the installed service's spool.
    """
    if env := os.environ.get("OBSERVER_SPOOL"):
        return Path(env)
    if configured:
        return Path(configured)
    return db_path.absolute().parent / "spool"


def default_metrics_dir(db_path: Path, configured: str = "") -> Path:
    """Where ``NAME.prom`` files are kept: ``job-metrics/`` beside the database by default."""
    if env := os.environ.get("OBSERVER_METRICS_DIR"):
        return Path(env)
    if configured:
        return Path(configured)
    return db_path.absolute().parent / "job-metrics"


def write_record(conn: sqlite3.Connection, record: RunRecord) -> list[Run]:
    """Store a finished run with its output in one transaction; return it if it is new."""
    if record.counts is not None:
        # The kept lines replace any stored before (an import that was interrupted).
        conn.execute("DELETE FROM output WHERE invocation_id = ?", (record.run.invocation_id,))
    batch = Batch(
        runs=[record.run],
        timers=[record.timer] if record.timer is not None else [],
        lines=list(record.lines),
        counts={record.counts.invocation_id: record.counts} if record.counts else {},
    )
    try:
        return write_batch(conn, batch)
    finally:
        if conn.in_transaction:  # write_batch failed before its own transaction began
            conn.rollback()


# -- the spool directory -----------------------------------------------------------------


def make_spool_dir(directory: Path, *under: str) -> Path:
    """Create the spool directory (owner only: spooled runs hold job output) or a subdirectory.

    As root, a directory created in another user's directory is given to that user (the
    daemon's spool in /var/lib/observer, owned by ``observer``).
    """
    for path in (directory, directory.joinpath(*under)):
        try:
            path.mkdir(mode=0o700, parents=path == directory)
        except FileExistsError:
            continue
        adopt(path)
    return directory.joinpath(*under)


def adopt(path: Path, fd: int | None = None) -> None:
    """As root, give ``path`` (or open ``fd``) to the owner of its directory if not root."""
    if os.geteuid() != 0:
        return
    parent = os.stat(path.parent)
    if parent.st_uid == 0:
        return
    if fd is not None:
        os.fchown(fd, parent.st_uid, parent.st_gid)
    else:
        os.chown(path, parent.st_uid, parent.st_gid, follow_symlinks=False)


def spool(record: RunRecord, directory: Path, db_path: Path) -> Path:
    """Write a run into the spool directory (atomically); return the file's path."""
    make_spool_dir(directory)
    path = directory / f"{record.run.invocation_id}.json"
    temporary = directory / f".{record.run.invocation_id}.tmp"
    data = encode(record, db_path)
    # The spool holds job output, which can hold secrets: owner only. O_EXCL and O_NOFOLLOW:
    # root never writes through a name another user planted.
    temporary.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        adopt(temporary, fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)
    return path


def spooled_files(directory: Path) -> list[Path]:
    """The spooled runs waiting in ``directory``, oldest first."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if not entry.name.endswith(".json") or entry.name.startswith("."):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:  # removed meanwhile
            continue
        if not stat.S_ISDIR(info.st_mode):
            found.append((info.st_mtime_ns, entry.name, Path(entry.path)))
    return [path for _, _, path in sorted(found)]


def import_spooled(
    conn: sqlite3.Connection,
    directory: Path,
    db_path: Path,
    metrics_dir: Path | None,
    limit: int | None = None,
    reported: set[str] | None = None,
) -> list[Run]:
    """Move spooled runs meant for ``db_path`` into the store; return those new to it.

    A file that is not a spooled run (not JSON of ours, a link, a FIFO, too large, values
    the store refuses) is renamed ``*.bad`` and left for a person to look at; one that
    cannot be read is reported once (``reported`` remembers it) and left; files meant for
    another database are left alone. Only a store that cannot be written stops the import.
    """
    imported: list[Run] = []
    target = same_file_key(db_path)
    reported = set() if reported is None else reported
    for path in spooled_files(directory)[:limit]:
        spooled = _read_spooled(path, reported)
        if spooled is None:
            continue
        meant_for, record = spooled
        if same_file_key(Path(meant_for)) != target:
            continue
        runs = _store(conn, path, record, db_path)
        if runs is None:
            continue
        imported.extend(runs)
        _clear(directory, path, record, metrics_dir)
    return imported


def _read_spooled(path: Path, reported: set[str]) -> tuple[str, RunRecord] | None:
    """The database a spooled run is meant for, and the run; None when there is none to take."""
    try:
        data = read_spool_file(path)
    except FileNotFoundError:  # another importer was faster
        return None
    except OSError as e:
        if str(path) not in reported:
            reported.add(str(path))
            logs.warning(__name__, "cannot read the spooled run %s: %s (left as it is)", path, e)
        return None
    try:
        if data is None:
            raise ValueError("not a regular file, or larger than a spooled run can be")
        return decode(data)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        _set_aside(path, str(e) or type(e).__name__)
        return None


def _store(
    conn: sqlite3.Connection, path: Path, record: RunRecord, db_path: Path
) -> list[Run] | None:
    """The runs new to the store once ``record`` is written; None when the store refuses it."""
    try:
        return write_record(conn, record)
    except (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError) as e:
        _set_aside(path, f"the store refuses it: {e}")
        return None
    except sqlite3.Error as e:
        raise StoreError(f"cannot move spooled runs into {str(db_path)!r}: {e}") from e


def _clear(directory: Path, path: Path, record: RunRecord, metrics_dir: Path | None) -> None:
    """A stored run leaves the spool: its metrics go to their directory, its files go."""
    if record.metrics is not None and metrics_dir is not None:
        try:
            place_metrics(metrics_dir, record.run.unit, record.metrics, record.run)
        except OSError as e:
            logs.warning(__name__, "cannot write the metrics of %s: %s", record.run.unit, e)
    path.unlink(missing_ok=True)  # only now: the run is committed
    # Its wrapper ended it: its mark of life is no longer needed (see liveness.py).
    (directory / LIVE_DIR / f"{record.run.invocation_id}{LIVE_SUFFIX}").unlink(missing_ok=True)


def read_spool_file(path: Path) -> bytes | None:
    """A spool file's bytes; None when it is not a regular file or is too large to be one."""
    # Never follow a link, never block on a FIFO: anyone who may write the spool may plant one.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SPOOL_FILE_BYTES:
            return None
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_SPOOL_FILE_BYTES:
                return None
        return b"".join(chunks)
    finally:
        os.close(fd)


def same_file_key(path: Path) -> str:
    return os.path.normpath(os.path.realpath(path))


def _set_aside(path: Path, why: str) -> None:
    logs.warning(__name__, "spooled run %s is unreadable (%s); renamed to *.bad", path, why)
    try:
        os.replace(path, path.with_suffix(".bad"))
    except OSError as e:
        logs.warning(__name__, "cannot rename %s: %s", path, e)


# -- metrics files -----------------------------------------------------------------------


def place_metrics(directory: Path, name: str, data: bytes, run: Run | None = None) -> Path:
    """Put what a job wrote to JOB_METRICS_FILE at ``<directory>/<name>.prom`` atomically.

    A spooled run's metrics do not replace a file written after that run ended.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / f"{name}.prom"
    if run is not None and run.finished_usec is not None:
        try:
            if path.stat().st_mtime_ns // 1000 > run.finished_usec:
                return path
        except FileNotFoundError:
            pass
    temporary = directory / f".{name}.prom.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return path


# -- the spool file format -----------------------------------------------------------------


def encode(record: RunRecord, db_path: Path) -> bytes:
    """A spooled run as JSON; bytes (output, metrics) as base64."""
    document = {
        "format": SPOOL_FORMAT,
        "db": str(db_path.absolute()),
        "run": encode_run(record.run),
        "lines": [
            [ln.seq, ln.realtime_usec, ln.priority, ln.stream, _b64(ln.message)]
            for ln in record.lines
        ],
        "counts": None if record.counts is None else record.counts._asdict(),
        "timer": None if record.timer is None else record.timer._asdict(),
        "metrics": None if record.metrics is None else _b64(record.metrics),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[str, RunRecord]:
    """The database a spooled run is meant for, and the run (every value checked)."""
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != SPOOL_FORMAT:
        raise ValueError("not a spooled run of a known format")
    run = decode_run(document["run"])
    lines = []
    for seq, usec, priority, stream, msg in document["lines"]:
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (seq, usec, priority)):
            raise ValueError("a spooled line with a number that is not one")
        if stream is not None and not isinstance(stream, str):
            raise ValueError("a spooled line with a stream that is not a string")
        if not (_is_int(seq) and _is_int(usec) and _is_int(priority)):
            _reject("line", max(seq, usec, priority, key=abs))
            raise ValueError("a spooled line with a number out of range")
        lines.append(StoredLine(run.key, seq, usec, priority, _unb64(msg), stream))
    counts = None if document["counts"] is None else OutputCounts(**document["counts"])
    timer = None if document["timer"] is None else TimerState(**document["timer"])
    for part, name in ((counts, "counts"), (timer, "timer")):
        if part is not None:
            _check_values(part, name)
    metrics = document["metrics"]
    if not isinstance(document["db"], str):
        raise ValueError("a spooled run without the database it is meant for")
    return document["db"], RunRecord(
        run=run,
        lines=tuple(lines),
        counts=counts,
        timer=timer,
        metrics=None if metrics is None else _unb64(metrics),
    )


def decode_run(fields_: object) -> Run:
    """A run as ``encode`` wrote it, every value checked."""
    if not isinstance(fields_, dict):
        raise ValueError("a spooled run that is not an object")
    values = dict(fields_)
    values["source"] = Source(values["source"])
    run = Run(**values)
    if not all(isinstance(v, str) and v for v in (run.unit, run.invocation_id, run.host)):
        raise ValueError("a spooled run without unit, invocation ID or host")
    _check_values(run, "run")
    return run


def encode_run(run: Run) -> dict[str, object]:
    """A run as JSON values."""
    values = run._asdict()
    values["source"] = str(run.source)
    return values


def _is_int(value: object) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return _INT64[0] <= value <= _INT64[1]


def _check_values(record: Run | OutputCounts | TimerState, name: str) -> None:
    """Every field of a spooled record is a string, an integer the store can hold, a figure
    in seconds, or null. `observer run` writes nothing else: a file that holds anything else
    is not what it wrote, and is set aside whole (a number out of range is counted too)."""
    for field, value in record._asdict().items():
        if value is None or isinstance(value, str) or _is_int(value) or _is_seconds(field, value):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            _reject(f"{name}.{field}", value)
            raise ValueError(f"a spooled {name} whose {field} is out of range")
        raise ValueError(f"a spooled {name} whose {field} is neither text nor a number")


def _reject(field: str, value: object) -> None:
    """Count a number out of range (bounds, and the logging it imports, only then)."""
    from observer.bounds import REJECTED  # noqa: PLC0415

    REJECTED.count("spool", field, value)


def _is_seconds(name: str, value: object) -> bool:
    """A figure in seconds (cpu_seconds): a finite float."""
    return name.endswith("_seconds") and isinstance(value, float) and math.isfinite(value)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"))
    except binascii.Error as e:
        raise ValueError(f"bad base64: {e}") from None
