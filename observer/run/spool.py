"""Runs of `observer run` on their way into the store, and the files kept beside it.

A run that cannot be written into the database (read-only, full, locked, corrupted,
permission denied) is written as one JSON file into the spool directory; the next
`observer run` and the daemon move spooled runs into the store. A run's invocation ID is
the store's key and a spool file is removed only after the transaction holding its run
committed, so a run arrives exactly once even when two importers race or one is killed.
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from observer.model import Run, Source, StoreError, TimerState
from observer.store import Batch, OutputCounts, StoredLine, write_batch

log = logging.getLogger(__name__)

SPOOL_FORMAT = 1
# What a job may leave in JOB_METRICS_FILE; more is ignored (with a warning).
MAX_METRICS_BYTES = 1024 * 1024
# How many spooled runs one `observer run` moves into the store, so it never lingers long.
IMPORT_BATCH = 50


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Everything `observer run` records about one run of a job."""

    run: Run
    lines: tuple[StoredLine, ...] = ()
    counts: OutputCounts | None = None
    timer: TimerState | None = None
    metrics: bytes | None = None  # what the job wrote to JOB_METRICS_FILE


def default_spool_dir(db_path: Path, configured: str = "") -> Path:
    """``$OBSERVER_SPOOL``, else the configured one, else /var/spool/observer as root."""
    if env := os.environ.get("OBSERVER_SPOOL"):
        return Path(env)
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/spool/observer")
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
    """Create the spool directory (owner only: spooled runs hold job output) or a subdirectory."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory.joinpath(*under)
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def spool(record: RunRecord, directory: Path, db_path: Path) -> Path:
    """Write a run into the spool directory (atomically); return the file's path."""
    make_spool_dir(directory)
    path = directory / f"{record.run.invocation_id}.json"
    temporary = directory / f".{record.run.invocation_id}.tmp"
    data = encode(record, db_path)
    # The spool holds job output, which can hold secrets: owner only.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
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
        entries = [e for e in os.scandir(directory) if e.name.endswith(".json") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name))
    return [Path(e.path) for e in entries]


def import_spooled(
    conn: sqlite3.Connection,
    directory: Path,
    db_path: Path,
    metrics_dir: Path | None,
    limit: int | None = None,
) -> list[Run]:
    """Move spooled runs meant for ``db_path`` into the store; return those new to it.

    A file that cannot be read as a spooled run is renamed ``*.bad`` and left for a person
    to look at; files meant for another database are left alone.
    """
    imported: list[Run] = []
    target = _same_file_key(db_path)
    for path in spooled_files(directory)[:limit]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # another importer was faster
            continue
        try:
            meant_for, record = decode(data)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("spooled run %s is unreadable (%s); renamed to *.bad", path, e)
            _set_aside(path)
            continue
        if _same_file_key(Path(meant_for)) != target:
            continue
        try:
            imported.extend(write_record(conn, record))
        except sqlite3.Error as e:
            raise StoreError(f"cannot move spooled runs into {str(db_path)!r}: {e}") from e
        if record.metrics is not None and metrics_dir is not None:
            try:
                place_metrics(metrics_dir, record.run.unit, record.metrics, record.run)
            except OSError as e:
                log.warning("cannot write the metrics of %s: %s", record.run.unit, e)
        path.unlink(missing_ok=True)  # only now: the run is committed
    return imported


def _same_file_key(path: Path) -> str:
    return os.path.normpath(os.path.realpath(path))


def _set_aside(path: Path) -> None:
    try:
        os.replace(path, path.with_suffix(".bad"))
    except OSError as e:
        log.warning("cannot rename %s: %s", path, e)


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
    run = asdict(record.run)
    run["source"] = str(record.run.source)
    document = {
        "format": SPOOL_FORMAT,
        "db": str(db_path.absolute()),
        "run": run,
        "lines": [
            [ln.seq, ln.realtime_usec, ln.priority, ln.stream, _b64(ln.message)]
            for ln in record.lines
        ],
        "counts": None if record.counts is None else asdict(record.counts),
        "timer": None if record.timer is None else asdict(record.timer),
        "metrics": None if record.metrics is None else _b64(record.metrics),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[str, RunRecord]:
    """The database a spooled run is meant for, and the run."""
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != SPOOL_FORMAT:
        raise ValueError("not a spooled run of a known format")
    fields = dict(document["run"])
    fields["source"] = Source(fields["source"])
    run = Run(**fields)
    if not all(isinstance(v, str) and v for v in (run.unit, run.invocation_id, run.host)):
        raise ValueError("a spooled run without unit, invocation ID or host")
    numbers = (run.started_usec, run.finished_usec, run.exit_status, run.restarts)
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in numbers):
        raise ValueError("a spooled run with a time or status that is not a number")
    lines = tuple(
        StoredLine(run.invocation_id, int(seq), int(usec), int(priority), _unb64(msg), stream)
        for seq, usec, priority, stream, msg in document["lines"]
    )
    counts = document["counts"]
    timer = document["timer"]
    metrics = document["metrics"]
    return str(document["db"]), RunRecord(
        run=run,
        lines=lines,
        counts=None if counts is None else OutputCounts(**counts),
        timer=None if timer is None else TimerState(**timer),
        metrics=None if metrics is None else _unb64(metrics),
    )


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"))
    except binascii.Error as e:
        raise ValueError(f"bad base64: {e}") from None
