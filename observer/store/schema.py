"""The SQLite schema: as the first release made it, each upgrade since, and the whole of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from observer.store import hosts, summary

# Schema 1, as the first release created it; MIGRATIONS bring it to SCHEMA_VERSION.
BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    unit TEXT NOT NULL,
    invocation_id TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    boot_id TEXT,
    trigger TEXT,
    started_usec INTEGER,
    finished_usec INTEGER,
    result TEXT,
    exit_code TEXT,
    exit_status INTEGER,
    restarts INTEGER
);
CREATE TABLE IF NOT EXISTS output (
    invocation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    realtime_usec INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    stream TEXT,
    message BLOB NOT NULL,
    PRIMARY KEY (invocation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS output_stats (
    invocation_id TEXT PRIMARY KEY,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    dropped_lines INTEGER NOT NULL,
    dropped_bytes INTEGER NOT NULL,
    head_end INTEGER,
    last_usec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timers (
    timer TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    next_elapse_usec INTEGER,
    last_trigger_usec INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""

# Alerts (observer/alerts/): each unit's alert state, the alerts sent, and every attempt to
# deliver one to a channel (named by scheme and host only: the URL holds secrets).
_ALERT_TABLES = """
CREATE TABLE IF NOT EXISTS alert_state (
    unit TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    failing_usec INTEGER,
    missed_usec INTEGER,
    awaited_usec INTEGER,
    stale_usec INTEGER,
    notified_usec INTEGER,
    last_success_usec INTEGER,
    seen_finished_usec INTEGER NOT NULL,
    seen_run_id INTEGER NOT NULL,
    overdue_invocation TEXT,
    first_seen_usec INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    created_usec INTEGER NOT NULL,
    unit TEXT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    run_id INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (created_usec);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    channel TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_usec INTEGER,
    UNIQUE (alert_id, channel_key)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_pending ON alert_deliveries (status, next_attempt_usec);
CREATE TABLE IF NOT EXISTS alert_attempts (
    delivery_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_usec INTEGER NOT NULL,
    duration_usec INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
"""

# Schema 4: a version per unit, bumped by every write that changes the unit's runs or their
# output (``note_changed``), so that a reader finds what changed without reading the runs. Not
# derived state: a unit without a row has version 0, and versions only ever grow.
_UNIT_CHANGES = """
CREATE TABLE IF NOT EXISTS unit_changes (
    unit TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Schema 5: the runs table as it is now. A start systemd refused or skipped has no
# invocation ID (a start key made from its journal record instead), a reason, what a run
# cost, and the lines journald dropped of its output.
_RUN_COLUMNS_1 = (
    "id, unit, invocation_id, host, source, boot_id, trigger, started_usec, finished_usec, "
    "result, exit_code, exit_status, restarts"
)
RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    unit TEXT NOT NULL,
    invocation_id TEXT UNIQUE,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    boot_id TEXT,
    trigger TEXT,
    started_usec INTEGER,
    finished_usec INTEGER,
    result TEXT,
    exit_code TEXT,
    exit_status INTEGER,
    restarts INTEGER,
    start_key TEXT UNIQUE,
    reason TEXT,
    cpu_seconds REAL,
    io_read_bytes INTEGER,
    io_write_bytes INTEGER,
    memory_peak_bytes INTEGER,
    output_lost_lines INTEGER,
    output_lost_usec INTEGER,
    CHECK (invocation_id IS NOT NULL OR start_key IS NOT NULL)
);
"""
# The summaries count skipped runs and keep cost percentiles: derived, so made anew (and
# refilled by _configure); the failed-run indexes follow the new meaning of "failed".
_SUMMARY_5 = (
    "DROP TABLE IF EXISTS unit_summary;\n"
    "DROP INDEX IF EXISTS failed_by_unit_order;\n"
    "DROP INDEX IF EXISTS failed_by_order;\n" + summary.TABLE + summary.INDEXES
)


def _runs_without_invocation(conn: sqlite3.Connection) -> None:
    """Schema 5: rebuild runs with a nullable invocation_id and the new columns, once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(runs)")}
        if "start_key" not in columns:
            conn.execute(RUNS_TABLE.replace("EXISTS runs", "EXISTS runs_5"))
            conn.execute(f"INSERT INTO runs_5 ({_RUN_COLUMNS_1}) SELECT {_RUN_COLUMNS_1} FROM runs")
            conn.execute("DROP TABLE runs")
            conn.execute("ALTER TABLE runs_5 RENAME TO runs")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.executescript(_SUMMARY_5)


# Schema 6 (observer/alerts/): what is wrong with a run beyond its result (its findings, as
# JSON; a run without a row has none; ``fails``: it counts as failed, by systemd's result or
# findings with findings_fail), the alert problems a success alone does not end (failure
# rate, duration trend), silences, and an index for a unit's alerts.
_FINDINGS = """
CREATE TABLE IF NOT EXISTS run_findings (
    run_id INTEGER PRIMARY KEY,
    findings TEXT NOT NULL,
    fails INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_problems (
    unit TEXT NOT NULL,
    kind TEXT NOT NULL,
    opened_usec INTEGER NOT NULL,
    PRIMARY KEY (unit, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_silences (
    id INTEGER PRIMARY KEY,
    pattern TEXT NOT NULL,
    created_usec INTEGER NOT NULL,
    until_usec INTEGER NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_unit ON alerts (unit, created_usec);
"""

# Schema 7 (a central database holds many hosts' runs, docs/fleet.md): the summaries, each
# unit's alert state and open problems are kept per host and unit, and an alert names its
# host. The summaries are derived: made anew (and refilled by upgrade()). The alert tables
# keep every row: a row of an older database belongs to the host of its unit's newest run
# (that database's own host; this machine's name when it has no run at all).
_HOST_ALERT_STATE = """
CREATE TABLE IF NOT EXISTS alert_state (
    unit TEXT NOT NULL,
    host TEXT NOT NULL,
    failures INTEGER NOT NULL,
    failing_usec INTEGER,
    missed_usec INTEGER,
    awaited_usec INTEGER,
    stale_usec INTEGER,
    notified_usec INTEGER,
    last_success_usec INTEGER,
    seen_finished_usec INTEGER NOT NULL,
    seen_run_id INTEGER NOT NULL,
    overdue_invocation TEXT,
    first_seen_usec INTEGER NOT NULL,
    PRIMARY KEY (unit, host)
) WITHOUT ROWID;
"""
_HOST_ALERT_PROBLEMS = """
CREATE TABLE IF NOT EXISTS alert_problems (
    unit TEXT NOT NULL,
    host TEXT NOT NULL,
    kind TEXT NOT NULL,
    opened_usec INTEGER NOT NULL,
    PRIMARY KEY (unit, host, kind)
) WITHOUT ROWID;
"""
# The host of a unit's newest run, through the unit's order index.
_HOST_OF = (
    "COALESCE((SELECT r.host FROM runs r WHERE r.unit = {unit} "
    f"ORDER BY {summary.NEWEST_FIRST} LIMIT 1), ?)"
)


def _old_host(conn: sqlite3.Connection) -> str:
    """The host an older database's rows belong to: its newest run's (or this machine's)."""
    import socket  # noqa: PLC0415 (a migration's: the reading commands open the store without)

    return hosts.newest_host(conn) or socket.gethostname()


def _per_host(conn: sqlite3.Connection) -> None:
    """Schema 7: key the summaries and the alert state by (host, unit), once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "host" not in {str(row[1]) for row in conn.execute("PRAGMA table_info(alerts)")}:
            fallback = _old_host(conn)
            for table, made in (
                ("alert_state", _HOST_ALERT_STATE), ("alert_problems", _HOST_ALERT_PROBLEMS)
            ):  # fmt: skip
                old = ", ".join(str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})"))
                conn.execute(f"ALTER TABLE {table} RENAME TO {table}_6")
                conn.execute(made)
                conn.execute(
                    f"INSERT INTO {table} ({old}, host) "
                    f"SELECT {old}, {_HOST_OF.format(unit='t.unit')} FROM {table}_6 t",
                    (fallback,),
                )
                conn.execute(f"DROP TABLE {table}_6")
            conn.execute("ALTER TABLE alerts ADD COLUMN host TEXT")
            host_of = _HOST_OF.format(unit="alerts.unit")
            conn.execute(f"UPDATE alerts SET host = {host_of}", (fallback,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if "host" not in {str(row[1]) for row in conn.execute("PRAGMA table_info(unit_summary)")}:
        conn.executescript("DROP TABLE IF EXISTS unit_summary;\n" + summary.TABLE)
    conn.executescript(summary.HOST_INDEXES)


# Schema 8 (observer/store/definitions.py): what defined each run. A definition (unit file,
# drop-ins, command, scripts, as JSON of paths and content digests) is kept once per digest,
# each file's text once per digest; a run names its definition and its unit's previous run's
# (None: the first run whose definition is known), so readers see a change without a search.
_DEFINITIONS = """
CREATE TABLE IF NOT EXISTS definitions (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS definition_texts (
    digest TEXT PRIMARY KEY,
    text BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_definitions (
    invocation_id TEXT PRIMARY KEY,
    definition_id INTEGER NOT NULL,
    previous_id INTEGER
) WITHOUT ROWID;
"""


def _kept_trend(conn: sqlite3.Connection) -> None:
    """Schema 9: the trend's medians kept in the summaries (filled by the rebuild), once."""
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(unit_summary)")}
    for column in ("trend_week_p50_seconds", "trend_earlier_p50_seconds"):
        if column not in columns:
            conn.execute(f"ALTER TABLE unit_summary ADD COLUMN {column} REAL")


# Schema upgrades, in order: step i brings a database of schema i + 1 to schema i + 2. A new
# database gets SCHEMA and then every step. Only ever append; each step must be idempotent
# (CREATE ... IF NOT EXISTS, or a function that checks what is there), so that two
# processes upgrading at once do no harm.
# Schema 3: the per-unit summaries (observer/store/summary.py) and the indexes the reads walk.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    _ALERT_TABLES,
    summary.TABLE + summary.INDEXES,
    _UNIT_CHANGES,
    _runs_without_invocation,
    _FINDINGS,
    _per_host,
    _DEFINITIONS,
    _kept_trend,
]
# The last schema whose upgrade changed unit_summary: it is filled again from the runs.
_SUMMARY_SCHEMA = 9


def _swap(text: str, table: str, before: str, made: str) -> str:
    """``text`` with the CREATE TABLE of ``table`` (up to the one of ``before``) as ``made``."""
    start = text.index(f"CREATE TABLE IF NOT EXISTS {table} ")
    end = text.index(f"CREATE TABLE IF NOT EXISTS {before} ")
    return text[:start] + made.lstrip() + text[end:]


# The whole current schema, for a database that is made and not upgraded (tests).
SCHEMA = (
    _swap(BASE_SCHEMA, "runs", "output", RUNS_TABLE)
    + _swap(_ALERT_TABLES, "alert_state", "alerts", _HOST_ALERT_STATE).replace(
        "run_id INTEGER\n);", "run_id INTEGER,\n    host TEXT\n);"
    )
    + _UNIT_CHANGES + summary.TABLE + summary.INDEXES + summary.HOST_INDEXES
    + _swap(_FINDINGS, "alert_problems", "alert_silences", _HOST_ALERT_PROBLEMS)
    + _DEFINITIONS
)  # fmt: skip
SCHEMA_VERSION = 1 + len(MIGRATIONS)


def upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a database of schema ``version`` (0: new) to SCHEMA_VERSION."""
    conn.executescript(BASE_SCHEMA)
    for step in MIGRATIONS[max(version, 1) - 1 :]:
        if isinstance(step, str):
            conn.executescript(step)
        else:
            step(conn)
    with conn:
        if version < _SUMMARY_SCHEMA:
            summary.rebuild(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
