"""SQLite: opening the file safely, and the daemon's writes (the schema: schema.py)."""

from __future__ import annotations

import os
import pwd
import sqlite3
from array import array
from collections.abc import Iterable

from observer import users
from observer.model import INTERRUPTED, Run, Source, StoreError, TimerState
from observer.records import Mutable, NamedTuple
from observer.store import schema, summary
from observer.store.schema import SCHEMA_VERSION

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from observer.store.definitions import RunDefinition

    # A path as text or as a Path: the reading commands open the store without pathlib.
    StrPath = str | os.PathLike[str]

# Each field keeps the first value known for it, but a run starts at the earliest time
# any source saw it start: merging partial runs is then independent of their order. A run
# is found by its invocation ID, or (a start that got none) by its start key.
_UPSERT_RUN = """
INSERT INTO runs (unit, invocation_id, host, source, boot_id, trigger, started_usec,
                  finished_usec, result, exit_code, exit_status, restarts, start_key, reason,
                  cpu_seconds, io_read_bytes, io_write_bytes, memory_peak_bytes)
VALUES (:unit, :invocation_id, :host, :source, :boot_id, :trigger, :started_usec,
        :finished_usec, :result, :exit_code, :exit_status, :restarts, :start_key, :reason,
        :cpu_seconds, :io_read_bytes, :io_write_bytes, :memory_peak_bytes)
ON CONFLICT ({key}) DO UPDATE SET
    reason = COALESCE(runs.reason, excluded.reason),
    cpu_seconds = COALESCE(runs.cpu_seconds, excluded.cpu_seconds),
    io_read_bytes = COALESCE(runs.io_read_bytes, excluded.io_read_bytes),
    io_write_bytes = COALESCE(runs.io_write_bytes, excluded.io_write_bytes),
    memory_peak_bytes = COALESCE(runs.memory_peak_bytes, excluded.memory_peak_bytes),
    boot_id = COALESCE(runs.boot_id, excluded.boot_id),
    trigger = COALESCE(runs.trigger, excluded.trigger),
    started_usec = MIN(COALESCE(runs.started_usec, excluded.started_usec),
                       COALESCE(excluded.started_usec, runs.started_usec)),
    finished_usec = COALESCE(runs.finished_usec, excluded.finished_usec),
    result = COALESCE(runs.result, excluded.result),
    exit_code = COALESCE(runs.exit_code, excluded.exit_code),
    exit_status = COALESCE(runs.exit_status, excluded.exit_status),
    restarts = COALESCE(excluded.restarts, runs.restarts)
"""
_UPSERT_BY_INVOCATION = _UPSERT_RUN.format(key="invocation_id")
_UPSERT_BY_START_KEY = _UPSERT_RUN.format(key="start_key")

_UPSERT_TIMER = """
INSERT INTO timers (timer, service, next_elapse_usec, last_trigger_usec)
VALUES (?, ?, ?, ?)
ON CONFLICT (timer) DO UPDATE SET
    service = excluded.service,
    next_elapse_usec = excluded.next_elapse_usec,
    last_trigger_usec = COALESCE(excluded.last_trigger_usec, timers.last_trigger_usec)
"""

_UPSERT_OUTPUT_STATS = """
INSERT INTO output_stats (invocation_id, lines, bytes, dropped_lines, dropped_bytes,
                          head_end, last_usec)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (invocation_id) DO UPDATE SET
    lines = excluded.lines, bytes = excluded.bytes,
    dropped_lines = excluded.dropped_lines, dropped_bytes = excluded.dropped_bytes,
    head_end = excluded.head_end, last_usec = excluded.last_usec
"""


def default_db_path() -> Path:
    """Where the database lives unless ``--db`` or ``OBSERVER_DB`` says otherwise."""
    from pathlib import Path  # noqa: PLC0415 (the reading commands take default_read_file)

    return Path(_default_db_file())


def _default_db_file() -> str:
    if os.geteuid() == 0 and not os.environ.get("OBSERVER_DB"):
        return "/var/lib/observer/observer.db"
    return users.user_db_file()


# Where the installed service (packaging/install.sh) keeps its database.
SYSTEM_DB_PATH: StrPath = "/var/lib/observer/observer.db"


def default_read_path() -> Path:
    """The database the reading commands read: ``default_db_path()``, except that a user
    with no database of their own reads the installed service's."""
    from pathlib import Path  # noqa: PLC0415

    return Path(default_read_file())


def default_read_file() -> str:
    """``default_read_path`` as text, made without pathlib (a reading command's start)."""
    path = _default_db_file()
    if os.environ.get("OBSERVER_DB") or os.path.exists(path) or not os.path.exists(SYSTEM_DB_PATH):
        return path
    return os.fspath(SYSTEM_DB_PATH)


# The page cache of each connection the daemon keeps open (the store's writer, metrics,
# alerts, `observer run`'s runs). Each fills SQLite's default 2,000 KiB within minutes at any
# size (a reading of every unit touches more pages than that), the four services' a tenth of
# the daemon's RSS; what they read again is the interior pages of an index or two and the
# few rows of each unit (the writer's: the unit's summary and its newest runs), and a page
# not cached is one read from the kernel's page cache.
SERVICE_CACHE_KIB = 512


def _prepare_file(path: Path) -> None:
    """Create the database file readable by its owner and group only: output holds secrets.

    An existing file is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, including those of an open SQLite connection,
    and another connection could then checkpoint and delete the WAL under it.
    """
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            if path.stat().st_mode & 0o007:
                path.chmod(0o640)
        else:
            os.close(fd)
    except OSError as e:
        raise StoreError(f"cannot create the database {str(path)!r}: {e.strerror}") from e


def _configure(conn: sqlite3.Connection, journal_mode: str = "WAL") -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("PRAGMA synchronous = NORMAL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database was written by a newer observer (schema {version}, "
            f"this one knows {SCHEMA_VERSION}): upgrade observer"
        )
    if version < SCHEMA_VERSION:
        schema.upgrade(conn, version)


def open_for_writing(path: Path, *, wal: bool = True) -> sqlite3.Connection:
    """A synchronous connection that may write (used by `observer run` and tests); without
    ``wal``, the file is kept in rollback-journal mode (a database rebuilt: lost.py)."""
    _prepare_file(path)
    try:
        conn = sqlite3.connect(path, timeout=10)
        _configure(conn, "WAL" if wal else "DELETE")
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the database {str(path)!r}: {e}") from e
    return conn


def open_for_reading(path: StrPath) -> sqlite3.Connection:
    """A connection for the CLI; the daemon may be writing at the same time (WAL)."""
    if not os.path.exists(path):
        raise StoreError(
            f"no database at {str(path)!r}: is the observer daemon running? "
            "(pass --db or set OBSERVER_DB to read another one)"
        )
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read the database {str(path)!r}: permission denied{_ask(path)}")
    try:
        conn, version = _connect_for_reading(str(path))
    except sqlite3.Error as e:
        # A reader that may not write the directory cannot create the -wal and -shm files
        # that WAL mode needs; they exist while the daemon runs. Without a -wal file the
        # database file holds every committed transaction: read it as it is, unlocked.
        if os.access(directory_of(path), os.W_OK) or os.path.exists(f"{path}-wal"):
            raise StoreError(f"cannot read the database {str(path)!r}: {e}") from e
        import urllib.parse  # noqa: PLC0415 (only for a database read as it is)

        uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?immutable=1"
        try:
            conn, version = _connect_for_reading(uri, uri=True)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the database {str(path)!r}: {e}") from e
    if version != SCHEMA_VERSION:
        conn.close()
        if version == 0:  # the file is made first, its schema after: a first write under way
            raise StoreError(
                f"{str(path)!r} holds no observer data yet: observer's first write is making "
                "it, or it is not observer's"
            )
        raise StoreError(f"{str(path)!r} is not an observer database of schema {SCHEMA_VERSION}")
    conn.row_factory = sqlite3.Row
    return conn


def service_connection(conn: sqlite3.Connection) -> sqlite3.Connection:
    """``conn``, its page cache bounded to SERVICE_CACHE_KIB: one of the daemon's services
    keeps it open."""
    conn.execute(f"PRAGMA cache_size = -{SERVICE_CACHE_KIB}")
    return conn


def _connect_for_reading(database: str, uri: bool = False) -> tuple[sqlite3.Connection, int]:
    conn = sqlite3.connect(database, timeout=10, uri=uri)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn, int(conn.execute("PRAGMA user_version").fetchone()[0])
    except BaseException:
        conn.close()
        raise


def directory_of(path: StrPath) -> str:
    """The directory holding ``path`` (Path.parent's, as text)."""
    return os.path.dirname(os.fspath(path)) or "."


def _ask(path: StrPath) -> str:
    """How a user gets to read ``path``: join the group that may read it."""
    import grp  # noqa: PLC0415 (only when the database cannot be read)

    try:
        info = os.stat(path)
        group = grp.getgrgid(info.st_gid).gr_name
        user = pwd.getpwuid(os.getuid()).pw_name
    except (OSError, KeyError):
        return ""
    if not info.st_mode & 0o040:
        return ""
    return (
        f" (members of group {group!r} may read it: ask root to run "
        f"`usermod -a -G {group} {user}`, then log in again)"
    )


def run_row(run: Run) -> dict[str, object]:
    """A run as the named parameters of the upsert."""
    return {
        "unit": run.unit,
        "invocation_id": run.invocation_id,
        "host": run.host,
        "source": str(run.source),
        "boot_id": run.boot_id,
        "trigger": run.trigger,
        "started_usec": run.started_usec,
        "finished_usec": run.finished_usec,
        "result": run.result,
        "exit_code": run.exit_code,
        "exit_status": run.exit_status,
        "restarts": run.restarts,
        "start_key": None if run.invocation_id else run.start_key,
        "reason": run.reason,
        "cpu_seconds": run.cpu_seconds,
        "io_read_bytes": run.io_read_bytes,
        "io_write_bytes": run.io_write_bytes,
        "memory_peak_bytes": run.memory_peak_bytes,
    }


class StoredLine(NamedTuple):
    """One line of output to store."""

    invocation_id: str
    seq: int
    realtime_usec: int
    priority: int
    message: bytes
    stream: str | None = None


class OutputCounts(NamedTuple):
    """An invocation's output counters, as OutputBudget keeps them."""

    invocation_id: str
    lines: int
    bytes: int
    dropped_lines: int
    dropped_bytes: int
    head_end: int | None
    last_usec: int


class Batch(Mutable):
    """Everything one step of the daemon writes, committed in a single transaction."""

    __slots__ = (
        "counts",
        "definitions",
        "dropped",
        "interrupted",
        "journal_cursor",
        "lines",
        "lost",
        "records",
        "runs",
        "state",
        "timers",
    )  # fmt: skip

    def __init__(
        self,
        *,
        runs: list[Run] | None = None,
        timers: list[TimerState] | None = None,
        lines: list[StoredLine] | None = None,
        dropped: list[tuple[str, int]] | None = None,
        counts: dict[str, OutputCounts] | None = None,
        journal_cursor: str | None = None,
        lost: list[tuple[str, int, int]] | None = None,
        interrupted: list[tuple[str, int, int | None]] | None = None,
        records: list[Run] | None = None,
        state: dict[str, str] | None = None,
        definitions: list[RunDefinition] | None = None,
    ) -> None:
        self.runs = [] if runs is None else runs
        self.timers = [] if timers is None else timers
        self.lines = [] if lines is None else lines
        self.dropped = [] if dropped is None else dropped
        self.counts = {} if counts is None else counts
        self.journal_cursor = journal_cursor
        # Lines journald dropped (rate limit): (invocation ID, lines, when it said so).
        self.lost = [] if lost is None else lost
        # A new systemd started: (host, its start, the journal's last entry before it).
        self.interrupted = [] if interrupted is None else interrupted
        # Runs as their own host's observer recorded them (run records): their facts win.
        self.records = [] if records is None else records
        # Rows of the state table committed with the cursor (a central observer's marks).
        self.state = {} if state is None else state
        # What defined runs that started (asked of systemd as they start).
        self.definitions = [] if definitions is None else definitions

    def __bool__(self) -> bool:
        return (
            bool(self.runs or self.timers or self.lines or self.dropped or self.counts or self.lost)
            or bool(self.interrupted or self.records or self.state or self.journal_cursor)
            or bool(self.definitions)
        )

    def followed_by(self, then: Batch) -> Batch:
        """One batch holding this one followed by ``then`` (a write to try again)."""
        counts = dict(self.counts)
        counts.update(then.counts)
        return Batch(
            records=self.records + then.records,
            state={**self.state, **then.state},
            runs=self.runs + then.runs,
            timers=self.timers + then.timers,
            lines=self.lines + then.lines,
            dropped=self.dropped + then.dropped,
            counts=counts,
            lost=self.lost + then.lost,
            interrupted=self.interrupted + then.interrupted,
            journal_cursor=then.journal_cursor or self.journal_cursor,
            definitions=self.definitions + then.definitions,
        )


def _key_of(run: Run) -> tuple[str, str]:
    """The column that finds a run's row and its value."""
    return ("invocation_id" if run.invocation_id is not None else "start_key", run.key)


def _stored(
    conn: sqlite3.Connection, runs: list[Run]
) -> dict[tuple[str, str], tuple[int, summary.Facts | None]]:
    """The rows already stored of ``runs``, by ``_key_of``: (ID, facts a summary reads)."""
    stored: dict[tuple[str, str], tuple[int, summary.Facts | None]] = {}
    for column in ("invocation_id", "start_key"):
        values = sorted({value for of, value in map(_key_of, runs) if of == column})
        for chunk in (values[i : i + 500] for i in range(0, len(values), 500)):
            stored.update(
                ((column, value), (run_id, tuple(facts)))
                for run_id, value, *facts in conn.execute(
                    f"SELECT id, {column}, {summary.FACTS} FROM runs "
                    f"WHERE {column} IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
            )
    return stored


def _merge_runs(conn: sqlite3.Connection, runs: list[Run], changes: summary.Changes) -> list[Run]:
    """Merge each run into its row (noting in ``changes`` what the row was); the runs that
    finished a row for the first time."""
    stored = _stored(conn, runs)  # one read for the batch, not one per run
    ended = {key: facts is not None and facts[1] is not None for key, (_, facts) in stored.items()}
    newly_finished = []
    for run in runs:
        key = _key_of(run)
        if run.finished and not ended.get(key, False):
            newly_finished.append(run)
            ended[key] = True
        upsert = _UPSERT_BY_INVOCATION if key[0] == "invocation_id" else _UPSERT_BY_START_KEY
        written = conn.execute(upsert, run_row(run))
        # Not stored: inserted (a row has a key, schema.RUNS_TABLE checks), lastrowid its ID.
        if key not in stored:
            stored[key] = (written.lastrowid or 0, None)
        changes.note(*stored[key])
    return newly_finished


def write_batch(conn: sqlite3.Connection, batch: Batch) -> list[Run]:
    """Write one batch in one transaction; return the runs it finished (for the first time)."""
    changes = summary.Changes()
    with conn:
        if not conn.in_transaction:
            # The rows as they were before this batch are read in its transaction: another
            # process's write (`observer run`) cannot come between the read and the batch.
            conn.execute("BEGIN IMMEDIATE")
        newly_finished = _merge_runs(conn, [*batch.runs, *batch.records], changes)
        conn.executemany(
            _UPSERT_TIMER,
            [(t.timer, t.service, t.next_elapse_usec, t.last_trigger_usec) for t in batch.timers],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO output VALUES (?, ?, ?, ?, ?, ?)",
            [
                (ln.invocation_id, ln.seq, ln.realtime_usec, ln.priority, ln.stream, ln.message)
                for ln in batch.lines
            ],
        )
        conn.executemany("DELETE FROM output WHERE invocation_id = ? AND seq = ?", batch.dropped)
        conn.executemany(
            _UPSERT_OUTPUT_STATS,
            [
                (
                    c.invocation_id,
                    c.lines,
                    c.bytes,
                    c.dropped_lines,
                    c.dropped_bytes,
                    c.head_end,
                    c.last_usec,
                )
                for c in batch.counts.values()
            ],
        )
        if batch.journal_cursor is not None:
            conn.execute(
                "INSERT OR REPLACE INTO state VALUES ('journal_cursor', ?)",
                (batch.journal_cursor,),
            )
        for run in batch.records:
            _override(conn, run)
        conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", batch.state.items())
        keys = {(run.host, run.unit) for run in [*batch.runs, *batch.records]}
        interrupted: set[tuple[str, str]] = set()  # counted again from their runs
        for host, before_usec, finished_usec in batch.interrupted:
            closed = close_interrupted(conn, host, before_usec, finished_usec)
            newly_finished.extend(closed)
            interrupted.update((run.host, run.unit) for run in closed)
        keys |= interrupted
        for invocation_id, lines, usec in batch.lost:
            conn.execute(
                "UPDATE runs SET output_lost_lines = COALESCE(output_lost_lines, 0) + ?, "
                "output_lost_usec = COALESCE(output_lost_usec, ?) WHERE invocation_id = ?",
                (lines, usec, invocation_id),
            )
        # Only the summaries whose runs changed what they read, from what the batch added.
        added = {k: v for k, v in changes.added(conn).items() if k not in interrupted}
        summary.refresh(conn, added.keys() | interrupted, added)
        _write_definitions(conn, batch.definitions)
        units = {unit for _, unit in keys} | {d.unit for d in batch.definitions}
        # Output of a run written by an earlier batch (a late line): find its unit.
        known = {run.invocation_id for run in [*batch.runs, *batch.records]}
        output = {ln.invocation_id for ln in batch.lines} | {iid for iid, _ in batch.dropped}
        output |= {iid for iid, _, _ in batch.lost}
        for invocation_id in sorted((output | batch.counts.keys()) - known):
            row = conn.execute(
                "SELECT unit FROM runs WHERE invocation_id = ?", (invocation_id,)
            ).fetchone()
            if row is not None:
                units.add(row[0])
        note_changed(conn, units)
    return newly_finished


def _write_definitions(conn: sqlite3.Connection, definitions: list[RunDefinition]) -> None:
    """Write what defined the runs; its module is imported only then (`observer run`, every
    cron job, writes none and starts faster without it)."""
    if definitions:
        from observer.store.definitions import write_definitions  # noqa: PLC0415

        write_definitions(conn, definitions)


# What a run record says replaces what PID 1's records made of the run.
_OVERRIDDEN = (
    "source", "boot_id", "trigger", "started_usec", "finished_usec", "result", "exit_code",
    "exit_status", "restarts", "reason", "cpu_seconds", "io_read_bytes", "io_write_bytes",
    "memory_peak_bytes",
)  # fmt: skip


def _override(conn: sqlite3.Connection, run: Run) -> None:
    row = run_row(run)
    sets = ", ".join(f"{name} = COALESCE(:{name}, {name})" for name in _OVERRIDDEN)
    key = "invocation_id" if run.invocation_id else "start_key"
    conn.execute(f"UPDATE runs SET {sets} WHERE {key} = :{key}", row)


def run_started_before(
    conn: sqlite3.Connection, host: str, unit: str, usec: int
) -> tuple[str | None, bool]:
    """The invocation of ``unit`` on ``host`` that started last at or before a time, and
    whether it has ended; (None, False) if none is stored."""
    row = conn.execute(
        "SELECT invocation_id, finished_usec FROM runs WHERE unit = ? AND host = ? "
        "AND invocation_id IS NOT NULL AND started_usec <= ? ORDER BY started_usec DESC LIMIT 1",
        (unit, host, usec),
    ).fetchone()
    return (None, False) if row is None else (row[0], row[1] is not None)


def read_states(conn: sqlite3.Connection, prefix: str) -> dict[str, str]:
    """The state rows whose key starts with ``prefix``."""
    rows = conn.execute(
        "SELECT key, value FROM state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
    )
    return dict(rows.fetchall())


def close_interrupted(
    conn: sqlite3.Connection, host: str, before_usec: int, finished_usec: int | None
) -> list[Run]:
    """Close the runs of ``host`` that systemd started before ``before_usec`` and that never
    ended: that systemd is gone. They end at ``finished_usec`` (the journal's last entry of
    that systemd), or at ``before_usec`` when the journal holds nothing of it."""
    rows = conn.execute(
        "SELECT id, unit, invocation_id, source, started_usec, trigger, boot_id FROM runs "
        "WHERE host = ? AND finished_usec IS NULL AND started_usec < ? AND source != ?",
        (host, before_usec, str(Source.WRAPPER)),
    ).fetchall()
    closed = []
    for run_id, unit, invocation_id, source, started, trigger, boot_id in rows:
        end = max(started, finished_usec if finished_usec is not None else before_usec)
        conn.execute(
            "UPDATE runs SET finished_usec = ?, result = COALESCE(result, ?) WHERE id = ?",
            (end, INTERRUPTED, run_id),
        )
        closed.append(
            Run(
                unit=unit,
                invocation_id=invocation_id,
                host=host,
                source=Source(source),
                started_usec=started,
                finished_usec=end,
                result=INTERRUPTED,
                trigger=trigger,
                boot_id=boot_id,
            )
        )
    return closed


def note_changed(conn: sqlite3.Connection, units: Iterable[str]) -> None:
    """Bump the version of ``units``, whose runs or output changed (in the caller's transaction)."""
    conn.executemany(
        "INSERT INTO unit_changes (unit, version) VALUES (?, 1) "
        "ON CONFLICT (unit) DO UPDATE SET version = version + 1",
        [(unit,) for unit in sorted(set(units))],
    )


def read_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def load_output(
    conn: sqlite3.Connection, invocation_id: str
) -> tuple[list[tuple[int, int]], OutputCounts | None, str | None]:
    """What the store holds of one invocation's output, to rebuild its budget."""
    kept = [
        (int(seq), int(size))
        for seq, size in conn.execute(
            "SELECT seq, length(message) FROM output WHERE invocation_id = ?", (invocation_id,)
        )
    ]
    row = conn.execute(
        "SELECT lines, bytes, dropped_lines, dropped_bytes, head_end, last_usec "
        "FROM output_stats WHERE invocation_id = ?",
        (invocation_id,),
    ).fetchone()
    counts = None if row is None else OutputCounts(invocation_id, *row)
    result = conn.execute(
        "SELECT result FROM runs WHERE invocation_id = ?", (invocation_id,)
    ).fetchone()
    return kept, counts, None if result is None else result[0]


def recent_output(conn: sqlite3.Connection, since_usec: int) -> array[int]:
    """Invocations with output stored since ``since_usec`` (more of it may still come), as
    the sorted ``hash()`` of each ID: 8 bytes each, where a set of the IDs takes some 120
    (a day of a thousand units' runs is 144,000 of them)."""
    rows = conn.execute(
        "SELECT invocation_id FROM output_stats WHERE last_usec >= ?", (since_usec,)
    )
    return array("q", sorted(hash(str(r[0])) for r in rows))
