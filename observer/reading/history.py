"""Read-only queries over the recorded runs, for the CLI: plain data, no printing.

Each takes a connection from ``store.open_for_reading`` (its rows are read by name).
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence

from observer import users
from observer.model import (
    VACUUMED_PREFIX,
    ObserverError,
    UnknownUnitError,
    VacuumedJournal,
    exit_facts,
    is_failure,
    is_skipped,
    run_duration_seconds,
)
from observer.reading import problems
from observer.records import NamedTuple
from observer.store import database, hosts, summary

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from observer.reading.stats import UnitStats
    from observer.store.definitions import StoredDefinition

# Unit types systemd knows: a name ending in one of these is a full unit name.
_UNIT_SUFFIXES = (
    ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path",
    ".timer", ".slice", ".scope",
)  # fmt: skip
_HEX_DIGITS = "0123456789abcdef"
_RUN_COLUMNS = (
    "r.id, r.unit, r.invocation_id, r.host, r.source, r.boot_id, r.trigger, r.started_usec, "
    "r.finished_usec, r.result, r.exit_code, r.exit_status, r.restarts, r.reason, "
    "r.cpu_seconds, r.io_read_bytes, r.io_write_bytes, r.memory_peak_bytes, "
    "r.output_lost_lines, r.output_lost_usec, "
    "COALESCE(s.dropped_lines, 0) AS dropped_lines, COALESCE(s.dropped_bytes, 0) AS dropped_bytes, "
    "f.findings AS findings, "
    "COALESCE(d.previous_id != d.definition_id, 0) AS definition_changed"
)
_RUNS_FROM = (
    "runs r LEFT JOIN output_stats s ON s.invocation_id = r.invocation_id "
    "LEFT JOIN run_findings f ON f.run_id = r.id "
    "LEFT JOIN run_definitions d ON d.invocation_id = r.invocation_id"
)
# Spelled as the indexes are (observer/store/summary.py), so that the queries walk them.
_ORDER_KEY = summary.ORDER_KEY
_FAILED = summary.FAILED
# Runs asked for by ID in one query: well within SQLite's parameters (999 before 3.32).
_IDS_PER_QUERY = 500


class NoSuchRunError(ObserverError):
    """No run has the ID a person asked about."""


class NoFailedRunError(ObserverError):
    """A unit has runs recorded, but none of them failed."""


class RecordedRun(NamedTuple):
    """One run as the store holds it; times in microseconds since the epoch.

    A NamedTuple, as RunDetail and UnitStatus: immutable like a frozen dataclass, but its
    class is made at import in a tenth of the time (every reading command's start) and an
    instance in a fraction (a listing makes one a run). It is never compared with a tuple.
    """

    id: int
    unit: str
    invocation_id: str | None  # None for a start systemd refused or skipped
    host: str
    source: str
    boot_id: str | None
    trigger: str | None
    started_usec: int | None
    finished_usec: int | None
    result: str | None
    exit_status: int | None  # only when the main process exited (not killed by a signal)
    signal: str | None  # KILL, TERM, ... when the main process was killed or dumped core
    restarts: int | None
    output_truncated: bool
    reason: str | None = None  # the failed condition, or the dependency that failed
    cpu_seconds: float | None = None  # None when systemd did not account it
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    memory_peak_bytes: int | None = None
    output_lost_lines: int | None = None  # journald dropped them (its rate limit)
    output_lost_usec: int | None = None  # when journald said so
    # What the alert rules found wrong with it: (kind, message), as observer/alerts stores them.
    findings: tuple[tuple[str, str], ...] = ()
    # The first run after its unit's definition (files, command) changed.
    definition_changed: bool = False

    @property
    def running(self) -> bool:
        return is_running(self.finished_usec)

    @property
    def skipped(self) -> bool:
        return not self.running and is_skipped(self.result)

    @property
    def failed(self) -> bool:
        return not self.running and is_failure(self.result)

    @property
    def duration_seconds(self) -> float | None:
        return run_duration_seconds(self.started_usec, self.finished_usec)


class LoggedLine(NamedTuple):
    """One kept line of a run's output (bytes as the unit printed them)."""

    seq: int
    realtime_usec: int
    priority: int
    message: bytes


class DroppedLines(NamedTuple):
    """Where output lines were dropped to stay within the budget, and how many."""

    lines: int


class LostLines(NamedTuple):
    """Where journald dropped lines of the run before they reached observer (rate limit)."""

    lines: int


class RunDetail(NamedTuple):
    """A run with its output, in order, with the gaps where lines were dropped."""

    run: RecordedRun
    output: tuple[LoggedLine | DroppedLines | LostLines, ...]
    output_lines: int
    output_bytes: int
    output_dropped_lines: int
    output_dropped_bytes: int
    # What defined it, and its unit's previous run (None: not recorded).
    definition: StoredDefinition | None = None


class UnitStatus(NamedTuple):
    """Where a unit stands now: its newest run and, for a timer's service, its next one."""

    unit: str
    last_result: str | None  # 'running' while the newest run has not finished
    last_started_usec: int | None
    next_run_usec: int | None
    success_rate: float | None
    consecutive_failures: int
    running: bool
    problems: tuple[str, ...] = ()  # the open alert problems: failing, missed, stale, rate, ...
    host: str = ""  # the host whose runs these are (one row per host and unit)


def resolve_unit(
    conn: sqlite3.Connection, name: str, selection: users.Selection = users.ALL
) -> str:
    """The recorded unit a person means by ``name`` (``backup`` means ``backup.service``; a
    user's unit is ``alice/backup.service``, found by ``selection``)."""
    bare = [name] if name.endswith(_UNIT_SUFFIXES) else [name, f"{name}.service"]
    candidates = [key for unit in bare for key in selection.keys(unit)]
    if name.endswith(".timer"):
        for timer in selection.keys(name):
            row = conn.execute("SELECT service FROM timers WHERE timer = ?", (timer,)).fetchone()
            if row is not None:
                candidates.append(row["service"])
    for candidate in candidates:
        if conn.execute("SELECT 1 FROM runs WHERE unit = ? LIMIT 1", (candidate,)).fetchone():
            return candidate
    shown = name if name.endswith(_UNIT_SUFFIXES) else f"{name}.service"
    recorded = recorded_units(conn)
    known = [unit for unit in recorded if selection.shows(unit)]
    matches = _close_matches(name, known)
    owners = sorted({users.user_of(u) or "" for u in recorded if users.unit_of(u) == shown})
    if matches:
        quoted = [repr(users.unit_of(match)) for match in matches]
        either = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
        hint = f"did you mean {either}?"
    elif owners:
        hint = " or ".join(f"--user {o}" if o else "no --user" for o in owners)
        hint = f"it has runs with {hint}"
    elif known:
        hint = "'observer status' lists the units with recorded runs"
    else:
        hint = "no runs are recorded yet"
    whose = "" if selection.user is None else f" of user {selection.user!r}"
    raise UnknownUnitError(f"no runs recorded for unit {shown!r}{whose} ({hint})")


def unit_history(
    conn: sqlite3.Connection, unit: str, limit: int = 20, on: hosts.HostMatcher = None
) -> list[RecordedRun]:
    """The newest ``limit`` runs of one unit (on the hosts ``on`` accepts), newest first."""
    return list(itertools.islice(_unit_runs(conn, unit, [], [], on, limit), limit))


def _unit_runs(
    conn: sqlite3.Connection,
    unit: str,
    where: Sequence[str],
    params: Sequence[object],
    on: hosts.HostMatcher,
    limit: int | None = None,
) -> Iterator[RecordedRun]:
    """A unit's runs newest first: through the unit's index, or merging the walks of the
    (unit, host) index of each host ``on`` accepts."""
    cut = [] if limit is None else [limit]
    if on is None:
        return _runs_where(conn, ["r.unit = ?", *where], [unit, *params], cut)
    walks = [
        _runs_where(conn, ["r.unit = ?", "r.host = ?", *where], [unit, host, *params], cut)
        for host in hosts.hosts_of(conn, unit, on)
    ]
    return heapq.merge(*walks, key=summary.newest_first)


def run_detail(conn: sqlite3.Connection, run_id: str) -> RunDetail:
    """One run with its output, by its number or by its invocation ID."""
    key = run_id.strip().lower()
    if len(key) == 32 and not key.strip(_HEX_DIGITS):  # an invocation ID
        where, value = "r.invocation_id = ?", key
    elif key.isdecimal():
        where, value = "r.id = ?", key
    else:
        raise NoSuchRunError(
            f"no run {run_id!r}: give a run's number (as 'observer history' shows it) "
            "or its 32-digit invocation ID"
        )
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM {_RUNS_FROM} WHERE {where}", (value,))
    found = row.fetchone()
    if found is None:
        raise NoSuchRunError(f"no run {run_id!r} is recorded ('observer history UNIT' lists runs)")
    return _with_output(conn, _recorded_run(found))


def last_failure(conn: sqlite3.Connection, unit: str, on: hosts.HostMatcher = None) -> RunDetail:
    """The newest finished run of ``unit`` (on the hosts ``on`` accepts) that did not
    succeed, with its output."""
    if (found := next(_unit_runs(conn, unit, [_FAILED], [], on, 1), None)) is None:
        raise NoFailedRunError(f"no failed run of {unit!r} is recorded" + " there" * bool(on))
    return _with_output(conn, found)


def recent_runs(
    conn: sqlite3.Connection,
    *,
    since_usec: int | None = None,
    unit_glob: str | None = None,
    failed_only: bool = False,
    limit: int | None = None,
    selection: users.Selection | None = None,
    on: hosts.HostMatcher = None,
) -> list[RecordedRun]:
    """Runs of all units, newest first: since a time, of units matching a glob, or failed,
    on the hosts ``on`` accepts.

    Each is read in index order and the reading stops at ``limit``: the cost follows the
    runs returned (and, with a glob, the units it matches), not the history's size.
    """
    where: list[str] = []
    params: list[object] = []
    if since_usec is not None:
        where.append(f"{_ORDER_KEY} >= ?")
        params.append(since_usec)
    if failed_only:
        where.append(_FAILED)
    recorded = recorded_units(conn)
    matches = unit_matcher(unit_glob or "*")
    shows = (selection or users.ALL).shows
    units = [unit for unit in recorded if shows(unit) and matches(users.unit_of(unit))]
    if len(units) == len(recorded) and on is None:  # every unit's runs: one walk of them all
        runs = _runs_where(conn, where, params)
    else:
        runs = heapq.merge(
            *(_unit_runs(conn, unit, where, params, on, limit) for unit in units),
            key=summary.newest_first,
        )
    return list(itertools.islice(runs, limit))


def _runs_where(
    conn: sqlite3.Connection,
    where: Sequence[str],
    params: Sequence[object],
    limit: Sequence[int] = (),
) -> Iterator[RecordedRun]:
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    cut = " LIMIT ?" if limit else ""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM {_RUNS_FROM}{condition} ORDER BY {summary.NEWEST_FIRST}{cut}",
        [*params, *limit],
    )
    return (_recorded_run(row) for row in rows)


def unit_status(conn: sqlite3.Connection, on: hosts.HostMatcher = None) -> list[UnitStatus]:
    """One row per host and unit with recorded runs, or unit with a scheduled timer: last
    result and next run."""
    return [status for status, _ in unit_summaries(conn, on=on)]


def unit_matcher(glob: str) -> Callable[[str], bool]:
    """A test for unit names: fnmatch syntax, where ``backup*`` also matches backup.service."""
    if glob == "*":  # every unit (`runs` without --unit): no pattern to compile
        return lambda unit: True
    import fnmatch  # noqa: PLC0415 (only for --unit: re costs every command's start)
    import re  # noqa: PLC0415

    pattern = re.compile(fnmatch.translate(glob))

    def matches(unit: str) -> bool:
        return bool(pattern.match(unit) or pattern.match(unit.removesuffix(".service")))

    return matches


def recorded_units(conn: sqlite3.Connection) -> list[str]:
    """Every unit with a kept summary (every unit with runs), in name order."""
    rows = conn.execute("SELECT DISTINCT unit FROM unit_summary ORDER BY unit")
    return [str(row[0]) for row in rows]


def _with_output(conn: sqlite3.Connection, run: RecordedRun) -> RunDetail:
    [detail] = run_outputs(conn, [run])
    return detail


def run_outputs(conn: sqlite3.Connection, runs: Sequence[RecordedRun]) -> list[RunDetail]:
    """What ``run_detail`` gives for each of ``runs``, read in two queries for them all."""
    from observer.store import definitions  # noqa: PLC0415 (not for the listings)

    # A start systemd refused has no invocation ID, and no output.
    ids = [run.invocation_id for run in runs if run.invocation_id is not None]
    marks = ", ".join("?" * len(ids))
    lines: dict[str, list[LoggedLine]] = {iid: [] for iid in ids}
    for row in conn.execute(
        "SELECT invocation_id, seq, realtime_usec, priority, message FROM output "
        f"WHERE invocation_id IN ({marks}) ORDER BY invocation_id, seq",
        ids,
    ):
        lines[row[0]].append(LoggedLine(row[1], row[2], row[3], bytes(row[4])))
    stats = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT invocation_id, lines, bytes, dropped_lines, dropped_bytes FROM output_stats "
            f"WHERE invocation_id IN ({marks})",
            ids,
        )
    }
    details = []
    for run in runs:
        kept = lines.get(run.invocation_id or "", [])
        counts = stats.get(run.invocation_id or "")
        total = len(kept) if counts is None else int(counts[0])
        details.append(
            RunDetail(
                run=run,
                output=tuple(with_lost(with_gaps(kept, total), run)),
                output_lines=total,
                output_bytes=sum(len(ln.message) for ln in kept) if counts is None else counts[1],
                output_dropped_lines=0 if counts is None else counts[2],
                output_dropped_bytes=0 if counts is None else counts[3],
                definition=definitions.of_run(conn, run.invocation_id),
            )
        )
    return details


def with_gaps(lines: Sequence[LoggedLine], total: int) -> list[LoggedLine | DroppedLines]:
    """Kept lines in order, with a DroppedLines wherever sequence numbers skip."""
    output: list[LoggedLine | DroppedLines] = []
    expected = 0
    for line in lines:
        if line.seq > expected:
            output.append(DroppedLines(line.seq - expected))
        output.append(line)
        expected = line.seq + 1
    if total > expected:
        output.append(DroppedLines(total - expected))
    return output


def with_lost(
    output: list[LoggedLine | DroppedLines], run: RecordedRun
) -> list[LoggedLine | DroppedLines | LostLines]:
    """``output`` with a LostLines where journald dropped lines: after the last line it
    stored before it said so."""
    if not run.output_lost_lines:
        return list(output)
    at = len(output)
    if run.output_lost_usec is not None:
        for i in range(len(output) - 1, -1, -1):
            entry = output[i]
            if isinstance(entry, LoggedLine):
                if entry.realtime_usec <= run.output_lost_usec:
                    break
                at = i
    marked: list[LoggedLine | DroppedLines | LostLines] = list(output)
    marked.insert(at, LostLines(run.output_lost_lines))
    return marked


def is_running(finished_usec: int | None) -> bool:
    """Whether a run is still running: it has no end."""
    return finished_usec is None


def _recorded_run(row: sqlite3.Row) -> RecordedRun:
    exit_status, signal = exit_facts(row["exit_code"], row["exit_status"])
    return RecordedRun(
        id=row["id"],
        unit=row["unit"],
        invocation_id=row["invocation_id"],
        host=row["host"],
        source=row["source"],
        boot_id=row["boot_id"],
        trigger=row["trigger"],
        started_usec=row["started_usec"],
        finished_usec=row["finished_usec"],
        result=row["result"],
        exit_status=exit_status,
        signal=signal,
        restarts=row["restarts"],
        output_truncated=row["dropped_lines"] > 0 or row["dropped_bytes"] > 0,
        reason=row["reason"],
        cpu_seconds=row["cpu_seconds"],
        io_read_bytes=row["io_read_bytes"],
        io_write_bytes=row["io_write_bytes"],
        memory_peak_bytes=row["memory_peak_bytes"],
        output_lost_lines=row["output_lost_lines"],
        output_lost_usec=row["output_lost_usec"],
        findings=problems.findings(row["findings"]),
        definition_changed=bool(row["definition_changed"]),
    )


def _close_matches(name: str, known: Iterable[str]) -> list[str]:
    import difflib  # noqa: PLC0415 (only for a unit not found)

    # Compared without ".service", so that the suffix does not make every service look close.
    by_stem = {unit.removesuffix(".service"): unit for unit in known}
    stems = difflib.get_close_matches(name.removesuffix(".service"), by_stem, n=3)
    return [by_stem[stem] for stem in stems]


# -- for the dashboard ---------------------------------------------------------------------


def next_runs(conn: sqlite3.Connection) -> dict[str, int]:
    """When a timer starts each service next (the earliest of its scheduled timers)."""
    rows = conn.execute(
        "SELECT service, MIN(next_elapse_usec) FROM timers "
        "WHERE next_elapse_usec IS NOT NULL GROUP BY service"
    )
    return {row[0]: int(row[1]) for row in rows}


def unit_summaries(
    conn: sqlite3.Connection, units: Iterable[str] | None = None, on: hosts.HostMatcher = None
) -> list[tuple[UnitStatus, UnitStats]]:
    """What ``unit_status`` gives, with each unit's all-time stats, from the kept summaries.

    For ``units`` (in name order), or for every unit with runs or a scheduled timer; a row
    per host (those ``on`` accepts) with runs of the unit.
    """
    from observer.reading.stats import stats_from  # noqa: PLC0415 (not for the listings)
    from observer.reading.stats import summaries as summaries_of  # noqa: PLC0415

    scheduled = next_runs(conn)
    open_problems = problems.open_problems(conn)
    if units is None:  # every kept summary in one query, and the timers' units without runs
        kept_ones = summaries_of(conn, None, on)
        found = {kept.unit for kept in kept_ones}
        waiting = sorted(scheduled.keys() - found)
        kept_ones = sorted([*kept_ones, *summaries_of(conn, waiting, on)], key=lambda k: k.unit)
    else:
        kept_ones = summaries_of(conn, sorted(set(units)), on)
    # A timer without runs has no host for ``on`` to match.
    shown = [kept for kept in kept_ones if kept.host or on is None]
    # The newest runs: one query a few hundred at a time, not one a unit.
    newest_ids = [kept.newest_run_id for kept in shown if kept.newest_run_id is not None]
    newest_runs = _outcomes(conn, newest_ids)
    summaries = []
    for kept in shown:
        result, started, running = newest_runs.get(kept.newest_run_id or 0, (None, None, False))
        stats = stats_from(kept)
        status = UnitStatus(
            unit=kept.unit,
            last_result="running" if running else result,
            last_started_usec=started,
            next_run_usec=scheduled.get(kept.unit),
            success_rate=stats.success_rate,
            consecutive_failures=stats.consecutive_failures,
            running=running,
            problems=open_problems.get(kept.key, ()),
            host=kept.host,
        )
        summaries.append((status, stats))
    return summaries


def _outcomes(
    conn: sqlite3.Connection, ids: Sequence[int]
) -> dict[int, tuple[str | None, int | None, bool]]:
    """Of the runs of ``ids``: (result, start, whether running), what a unit's status shows
    of its newest run; read without the rest of a run (`status` of 1,000 units reads 1,000)."""
    outcomes = {}
    for marks, chunk in _id_chunks(ids):
        rows = conn.execute(
            f"SELECT id, result, started_usec, finished_usec FROM runs WHERE id IN ({marks})",
            chunk,
        )
        for run_id, result, started, finished in rows:
            outcomes[run_id] = (result, started, is_running(finished))
    return outcomes


def _id_chunks(ids: Sequence[int]) -> Iterator[tuple[str, Sequence[int]]]:
    """``ids`` _IDS_PER_QUERY at a time, each with its ``?`` marks for ``IN (...)``."""
    for at in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[at : at + _IDS_PER_QUERY]
        yield ", ".join("?" * len(chunk)), chunk


def runs_by_id(
    conn: sqlite3.Connection, *, above_id: int | None = None, ids: Iterable[int] = ()
) -> list[RecordedRun]:
    """The runs with an ID above ``above_id`` and those of ``ids``, in ID order."""
    runs = [] if above_id is None else _unordered(conn, "r.id > ?", [above_id])
    # Apart: with OR, SQLite walks every run instead of two searches by ID.
    wanted = sorted({i for i in ids if above_id is None or i <= above_id})
    for marks, chunk in _id_chunks(wanted):
        runs += _unordered(conn, f"r.id IN ({marks})", chunk)
    return sorted(runs, key=lambda run: run.id)


def _unordered(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[RecordedRun]:
    rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM {_RUNS_FROM} WHERE {where}", params)
    return [_recorded_run(row) for row in rows]


def vacuumed_journal(conn: sqlite3.Connection) -> list[VacuumedJournal]:
    """Journal history the daemon found vacuumed before it read it, oldest first."""
    rows = database.read_states(conn, VACUUMED_PREFIX).items()
    gaps = [VacuumedJournal.from_state_row(key, value) for key, value in rows]
    return sorted((gap for gap in gaps if gap is not None), key=lambda gap: gap.after_usec)
