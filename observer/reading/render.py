"""Recorded runs as people read them (aligned tables, local times, short durations) and as
scripts read them (JSON with ISO 8601 times and durations in seconds)."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from observer.model import VacuumedJournal, exit_text
from observer.output import dropped_marker, lost_marker, printable
from observer.reading import history
from observer.spans import human_duration
from observer.users import unit_of, user_of

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. The JSON's shapes
# are for mypy only: a command that prints a table imports neither typing nor them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    from observer.reading.stats import UnitStats
    from observer.recording.definitions import DefinitionFile
    from observer.store.definitions import StoredDefinition

    class RunJson(TypedDict):
        id: int
        unit: str
        user: str | None
        invocation_id: str | None
        host: str
        source: str
        trigger: str | None
        started_at: str | None
        finished_at: str | None
        duration_seconds: float | None
        result: str | None
        exit_status: int | None
        signal: str | None
        restarts: int | None
        output_truncated: bool
        reason: str | None
        cpu_seconds: float | None
        io_read_bytes: int | None
        io_write_bytes: int | None
        memory_peak_bytes: int | None
        output_lost_lines: int | None
        findings: list[FindingJson]
        definition_changed: bool

    class DefinitionJson(TypedDict):
        digest: str
        unit_file: dict[str, str | None] | None
        dropins: list[dict[str, str | None]]
        command: str | None
        scripts: list[dict[str, str | None]]
        previous_digest: str | None
        changes: list[str]

    class FindingJson(TypedDict):
        kind: str
        message: str

    class OutputLineJson(TypedDict):
        time: str | None
        priority: int | None
        message: str

    class DroppedLinesJson(OutputLineJson):
        dropped_lines: int

    class LostLinesJson(OutputLineJson):
        lost_lines: int

    class RunDetailJson(RunJson):
        boot_id: str | None
        output: list[OutputLineJson]
        output_lines: int
        output_bytes: int
        output_dropped_lines: int
        output_dropped_bytes: int
        definition: DefinitionJson | None

    class StatsJson(TypedDict):
        unit: str
        user: str | None
        host: str
        runs: int
        successes: int
        failures: int
        skipped: int
        success_rate: float | None
        duration_p50_seconds: float | None
        duration_p95_seconds: float | None
        duration_max_seconds: float | None
        cpu_p50_seconds: float | None
        cpu_p95_seconds: float | None
        memory_peak_p50_bytes: int | None
        memory_peak_p95_bytes: int | None
        last_success_at: str | None
        last_failure_at: str | None
        consecutive_failures: int
        trend: float | None

    class StatusJson(TypedDict):
        unit: str
        user: str | None
        host: str
        last_result: str | None
        last_started_at: str | None
        next_run_at: str | None
        success_rate: float | None
        consecutive_failures: int
        running: bool
        open_problems: list[str]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Marks the ID of the first run after its unit's definition changed.
CHANGED_MARK = "*"
CHANGED_LEGEND = "* first run after its unit's definition changed ('observer show ID' says what)"
# syslog levels, as the journal's PRIORITY field holds them.
_PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def local_time(usec: int) -> datetime:
    """A time from the store (microseconds since the epoch) in the local time zone, exactly."""
    return (_EPOCH + timedelta(microseconds=usec)).astimezone()


def iso_time(usec: int | None) -> str | None:
    """ISO 8601 with microseconds and the local offset, for JSON."""
    return None if usec is None else local_time(usec).isoformat(timespec="microseconds")


def human_bytes(size: int | None) -> str:
    """A size people read at a glance: 512 B, 1.5 KiB, 20.0 MiB."""
    if size is None:
        return "-"
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def cost_text(run: history.RecordedRun) -> str | None:
    """What a run cost, as far as systemd accounted it; None when it accounted nothing."""
    parts = []
    if run.cpu_seconds is not None:
        parts.append(f"{human_duration(run.cpu_seconds)} CPU")
    if run.memory_peak_bytes is not None:
        parts.append(f"{human_bytes(run.memory_peak_bytes)} memory peak")
    if run.io_read_bytes is not None:
        parts.append(f"{human_bytes(run.io_read_bytes)} read")
    if run.io_write_bytes is not None:
        parts.append(f"{human_bytes(run.io_write_bytes)} written")
    return ", ".join(parts) or None


def count(n: int, noun: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def run_facts(detail: history.RunDetail) -> list[tuple[str, str]]:
    """Every fact of one run as (name, text), the way `show` and the dashboard list them."""
    run = detail.run
    output = f"{count(detail.output_lines, 'line')}, {count(detail.output_bytes, 'byte')}"
    if detail.output_dropped_lines or detail.output_dropped_bytes:
        dropped_lines = count(detail.output_dropped_lines, "line")
        output += f" ({dropped_lines}, {count(detail.output_dropped_bytes, 'byte')} dropped)"
    if run.output_lost_lines:
        output += f"; journald dropped {count(run.output_lost_lines, 'line')} (rate limit)"
    facts: list[tuple[str, object]] = [
        ("Run", run.id), ("Unit", unit_of(run.unit)),
        *([("User", user)] if (user := user_of(run.unit)) is not None else []),
        ("Invocation", run.invocation_id),
        ("Host", run.host), ("Boot", run.boot_id), ("Source", run.source),
        ("Trigger", run.trigger), ("Started", table_time(run.started_usec)),
        ("Finished", table_time(run.finished_usec)),
        ("Duration", human_duration(run.duration_seconds)), ("Result", _result(run)),
        *([("Reason", run.reason)] if run.reason is not None else []),
        ("Exit status", exit_text(run.exit_status, run.signal)), ("Restarts", run.restarts),
        ("Cost", cost_text(run)), ("Output", output),
    ]  # fmt: skip
    facts += [("Finding", f"{message} ({kind})") for kind, message in run.findings]
    facts += definition_facts(detail.definition)
    return [(name, "-" if value is None else str(value)) for name, value in facts]


def definition_changes(stored: StoredDefinition | None) -> list[str]:
    """What changed in a run's definition since its unit's previous run."""
    if stored is None or stored.previous is None:
        return []
    from observer.recording.definitions import changes  # noqa: PLC0415 (show and the pages)

    return changes(stored.previous, stored.definition)


def definition_facts(stored: StoredDefinition | None) -> list[tuple[str, str]]:
    """A run's definition as facts: its digest, and each change since the previous run."""
    if stored is None:
        return [("Definition", "not recorded")]
    digest = stored.definition.digest[:12]
    if stored.previous is None:
        return [("Definition", f"{digest} (the first recorded for its unit)")]
    found = definition_changes(stored)
    if not found:
        return [("Definition", f"{digest} (unchanged since the unit's previous run)")]
    return [("Definition", f"{digest} (changed since the unit's previous run)")] + [
        ("Changed", change) for change in found
    ]


def detail_text(detail: history.RunDetail) -> str:
    """Every fact of one run, then its output with a marker where lines were dropped."""
    facts = run_facts(detail)
    width = max(len(name) for name, _ in facts) + 2
    lines = [f"{name + ':':<{width}}{cell(value)}" for name, value in facts]
    lines.append("")
    if not detail.output:
        lines.append("(no output recorded)")
    for entry in detail.output:
        if isinstance(entry, history.DroppedLines):
            lines.append(dropped_marker(entry.lines))
        elif isinstance(entry, history.LostLines):
            lines.append(lost_marker(entry.lines))
        else:
            stamp = local_time(entry.realtime_usec).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            lines.append(f"{stamp}  {_priority(entry.priority):<7}  {printable(entry.message)}")
    return "\n".join(lines)


def runs_table(
    runs: Sequence[history.RecordedRun],
    *,
    with_unit: bool,
    with_host: bool = False,
    width: int | None = None,
) -> str:
    """One line per run; ``with_unit`` when the runs are of several units, ``with_host``
    when the database holds several hosts' runs."""
    named = _unit_columns([run.unit for run in runs]) if with_unit else 0
    rows = [_run_cells(run, named) for run in runs]
    headers = _run_headers(named)
    if any(run.findings for run in runs):  # the mark: which findings each run had
        headers.append("FINDINGS")
        for row, run in zip(rows, runs, strict=True):
            row.append(", ".join(dict.fromkeys(kind for kind, _ in run.findings)) or "-")
    headers, rows, right = _host_column(
        with_host, headers, rows, _run_numbers(named), [run.host for run in runs]
    )
    text = table(headers, rows, right=right, empty="no matching runs", width=width, drop=_RUN_DROP)
    if any(run.definition_changed for run in runs):
        text += f"\n{CHANGED_LEGEND}"
    return text


def runs_table_header(*, with_unit: bool, with_host: bool = False) -> str:
    """The header of a table whose rows come one at a time (``runs_table_row``)."""
    named = int(with_unit)
    headers, _, right = _host_column(with_host, _run_headers(named), [], _run_numbers(named), [])
    return _aligned(headers, [12] * with_host + _run_widths(named), right)


def runs_table_row(run: history.RecordedRun, *, with_unit: bool, with_host: bool = False) -> str:
    """One run as a row under ``runs_table_header``: columns of fixed widths, which a longer
    value widens for its own row only (a user's unit shows as ``alice/backup.service``)."""
    named = int(with_unit)
    _, [cells], right = _host_column(
        with_host, [], [_run_cells(run, named)], _run_numbers(named), [run.host]
    )
    return _aligned(cells, [12] * with_host + _run_widths(named), right)


def _host_column(
    with_host: bool,
    headers: list[str],
    rows: list[list[str]],
    right: set[int],
    hosts: Sequence[str],
) -> tuple[list[str], list[list[str]], set[int]]:
    """A table with a HOST column first, when ``with_host``; ``hosts``: one per row."""
    if not with_host:
        return headers, rows, right
    rows = [[cell(host), *row] for host, row in zip(hosts, rows, strict=True)]
    return ["HOST", *headers], rows, {i + 1 for i in right}


def _run_headers(named: int) -> list[str]:
    return ["ID", *["USER", "UNIT"][2 - named:], "STARTED", "DURATION", "RESULT", "EXIT",
            "TRIGGER"]  # fmt: skip


def _run_cells(run: history.RecordedRun, named: int) -> list[str]:
    return [
        f"{run.id}{CHANGED_MARK * run.definition_changed}", *unit_cells(run.unit, named),
        table_time(run.started_usec), human_duration(run.duration_seconds),
        _result(run), exit_text(run.exit_status, run.signal), cell(run.trigger or "-"),
    ]  # fmt: skip


def _run_numbers(named: int) -> set[int]:
    return {0, 2 + named}


def _run_widths(named: int) -> list[int]:
    # Room for most values: IDs to a million, unit names of 30 characters, `exit-code`.
    return [6, *[12, 30][2 - named :], 19, 8, 9, 7, 0]


def _unit_columns(units: Sequence[str]) -> int:
    """How many columns name the units: UNIT, and USER when one of them is a user's."""
    return 2 if any(user_of(unit) is not None for unit in units) else 1


def unit_cells(key: str, columns: int) -> list[str]:
    """A stored unit as its table cells: [UNIT], or [USER, UNIT] (``-`` for the system's).
    In one UNIT column a user's unit keeps its stored name (``alice/backup.service``)."""
    if columns == 0:
        return []
    if columns == 1:
        return [cell(key)]
    return [cell(user_of(key) or "-"), cell(unit_of(key))]


def stats_table(
    stats: Sequence[UnitStats], *, with_host: bool = False, width: int | None = None
) -> str:
    """One line per unit: counts, success rate, duration percentiles, last outcomes."""
    named = _unit_columns([s.unit for s in stats])
    rows = [
        [
            *unit_cells(s.unit, named), str(s.runs), str(s.successes), str(s.failures),
            str(s.skipped),
            percent(s.success_rate), human_duration(s.duration_p50_seconds),
            human_duration(s.duration_p95_seconds), human_duration(s.duration_max_seconds),
            human_duration(s.cpu_p50_seconds), human_duration(s.cpu_p95_seconds),
            human_bytes(s.memory_peak_p50_bytes), human_bytes(s.memory_peak_p95_bytes),
            table_time(s.last_success_usec), table_time(s.last_failure_usec),
            str(s.consecutive_failures), "-" if s.trend is None else f"{s.trend:.2f}x",
        ]
        for s in stats
    ]  # fmt: skip
    headers = [*["USER", "UNIT"][2 - named:], "RUNS", "OK", "FAILED", "SKIPPED", "SUCCESS",
               "P50", "P95", "MAX", "CPU P50", "CPU P95", "MEM P50", "MEM P95", "LAST SUCCESS",
               "LAST FAILURE", "FAILED IN A ROW", "TREND"]  # fmt: skip
    right = {named + i for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15)}
    headers, rows, right = _host_column(with_host, headers, rows, right, [s.host for s in stats])
    return table(
        headers, rows, right=right, empty="no runs recorded", width=width, drop=_STATS_DROP
    )


def status_table(
    statuses: Sequence[history.UnitStatus], *, with_host: bool = False, width: int | None = None
) -> str:
    """One line per unit (per host and unit, ``with_host``): its last result, when it last
    started and when it runs next."""
    named = _unit_columns([s.unit for s in statuses])
    rows = [
        [
            *unit_cells(s.unit, named), cell(s.last_result or "-"),
            table_time(s.last_started_usec), table_time(s.next_run_usec),
            percent(s.success_rate), str(s.consecutive_failures),
        ]
        for s in statuses
    ]  # fmt: skip
    headers = [*["USER", "UNIT"][2 - named:], "LAST RESULT", "LAST STARTED", "NEXT RUN",
               "SUCCESS", "FAILED IN A ROW"]  # fmt: skip
    if any(s.problems for s in statuses):  # the mark: which units have open alert problems
        headers.append("PROBLEMS")
        for row, status in zip(rows, statuses, strict=True):
            row.append(", ".join(status.problems) or "-")
    headers, rows, right = _host_column(
        with_host, headers, rows, {named + 3, named + 4}, [s.host or "-" for s in statuses]
    )
    return table(
        headers, rows, right=right, empty="no runs recorded", width=width, drop=_STATUS_DROP
    )


def vacuumed_lines(gaps: Sequence[VacuumedJournal]) -> list[str]:
    """What ``observer status`` notes on stderr of each stretch of journal history
    that was vacuumed before observer read it (so its runs are not recorded)."""
    return [
        f"journal history from {table_time(gap.after_usec)} to {table_time(gap.until_usec)} "
        "was vacuumed before observer read it: runs in it are not recorded"
        for gap in gaps
    ]


# The columns a table leaves out to fit a narrow terminal, the first first (--wide: none).
_RUN_DROP = ("TRIGGER", "EXIT", "HOST", "USER")
_STATUS_DROP = ("FAILED IN A ROW", "SUCCESS", "HOST", "USER")
_STATS_DROP = (
    "MEM P95", "CPU P95", "MEM P50", "CPU P50", "SKIPPED", "MAX", "TREND", "OK", "HOST",
    "LAST SUCCESS", "P95", "FAILED IN A ROW", "USER", "LAST FAILURE",
)  # fmt: skip


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: set[int],
    empty: str,
    width: int | None = None,
    drop: Sequence[str] = (),
) -> str:
    """Columns aligned with two spaces between them; ``right`` aligns numbers. Within
    ``width`` (None: no limit) by leaving out the columns named in ``drop``, first ones
    first, then by shortening the widest text columns (``…`` ends a shortened cell)."""
    if not rows:
        return empty
    headers, rows, right = _within(list(headers), [list(r) for r in rows], right, width, drop)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    if width is None:  # every column as wide as its widest cell: nothing to cut
        layout = _layout(widths, right)
        return "\n".join(layout.format(*row).rstrip() for row in [headers, *rows])
    widths = _shortened(widths, headers, right, width)
    return "\n".join(_aligned(_cut(row, widths), widths, right) for row in [headers, *rows])


def terminal_width(wide: bool) -> int | None:
    """The width tables must fit: the terminal's, unless ``wide`` or stdout is not one."""
    if wide or not sys.stdout.isatty():
        return None
    return _terminal_columns()


def _terminal_columns() -> int:
    """shutil.get_terminal_size's columns (importing shutil costs a command's start more):
    $COLUMNS, else the terminal's, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdecimal() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def _total(widths: Sequence[int]) -> int:
    return sum(widths) + 2 * (len(widths) - 1)


def _within(
    headers: list[str],
    rows: list[list[str]],
    right: set[int],
    width: int | None,
    drop: Sequence[str],
) -> tuple[list[str], list[list[str]], set[int]]:
    """The table without the fewest of the ``drop`` columns that make it fit ``width``."""
    if width is None:
        return headers, rows, right
    for name in drop:
        widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
        if _total(widths) <= width:
            break
        if name not in headers:
            continue
        gone = headers.index(name)
        headers.pop(gone)
        for row in rows:
            row.pop(gone)
        right = {i - (i > gone) for i in right if i != gone}
    return headers, rows, right


def _shortened(widths: list[int], headers: Sequence[str], right: set[int], width: int) -> list[int]:
    """Narrow the widest text column (never below its header, or 8) until the table fits."""
    widths = list(widths)
    while _total(widths) > width:
        narrowable = [
            i for i in range(len(widths))
            if i not in right and widths[i] > max(len(headers[i]), 8)
        ]  # fmt: skip
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= min(_total(widths) - width, widths[widest] - max(len(headers[widest]), 8))
    return widths


def _cut(row: Sequence[str], widths: Sequence[int]) -> list[str]:
    return [
        text if len(text) <= w else text[: w - 1] + "…" for text, w in zip(row, widths, strict=True)
    ]


def _aligned(row: Sequence[str], widths: Sequence[int], right: set[int]) -> str:
    if len(row) != len(widths):
        raise ValueError(f"{len(row)} cells for {len(widths)} columns")
    return _layout(widths, right).format(*row).rstrip()


def _layout(widths: Sequence[int], right: set[int]) -> str:
    """The format of a row: each cell padded to its column's width (numbers on the right),
    two spaces between. The cells are format's values: braces in them stay text."""
    return "  ".join(f"{{:{'>' if i in right else '<'}{width}}}" for i, width in enumerate(widths))


def run_json(run: history.RecordedRun) -> RunJson:
    """A run for ``history``, ``runs`` and inside ``show``."""
    return {
        "id": run.id,
        "unit": unit_of(run.unit),
        "user": user_of(run.unit),
        "invocation_id": run.invocation_id,
        "host": run.host,
        "source": run.source,
        "trigger": run.trigger,
        "started_at": iso_time(run.started_usec),
        "finished_at": iso_time(run.finished_usec),
        "duration_seconds": run.duration_seconds,
        "result": run.result,
        "exit_status": run.exit_status,
        "signal": run.signal,
        "restarts": run.restarts,
        "output_truncated": run.output_truncated,
        "reason": run.reason,
        "cpu_seconds": run.cpu_seconds,
        "io_read_bytes": run.io_read_bytes,
        "io_write_bytes": run.io_write_bytes,
        "memory_peak_bytes": run.memory_peak_bytes,
        "output_lost_lines": run.output_lost_lines,
        "findings": [{"kind": kind, "message": message} for kind, message in run.findings],
        "definition_changed": run.definition_changed,
    }


def detail_json(detail: history.RunDetail) -> RunDetailJson:
    """A run with its output, for ``show`` and ``last-failure``."""
    output: list[OutputLineJson] = []
    for entry in detail.output:
        if isinstance(entry, history.DroppedLines):
            dropped: DroppedLinesJson = {
                "time": None,
                "priority": None,
                "message": dropped_marker(entry.lines),
                "dropped_lines": entry.lines,
            }
            output.append(dropped)
        elif isinstance(entry, history.LostLines):
            lost: LostLinesJson = {
                "time": None,
                "priority": None,
                "message": lost_marker(entry.lines),
                "lost_lines": entry.lines,
            }
            output.append(lost)
        else:
            output.append(
                {
                    "time": iso_time(entry.realtime_usec),
                    "priority": entry.priority,
                    "message": printable(entry.message),
                }
            )
    return {
        **run_json(detail.run),
        "boot_id": detail.run.boot_id,
        "output": output,
        "output_lines": detail.output_lines,
        "output_bytes": detail.output_bytes,
        "output_dropped_lines": detail.output_dropped_lines,
        "output_dropped_bytes": detail.output_dropped_bytes,
        "definition": definition_json_of(detail.definition),
    }


def definition_json_of(stored: StoredDefinition | None) -> DefinitionJson | None:
    """A run's definition and what changed since its unit's previous run, for ``--json``."""
    if stored is None:
        return None
    current = stored.definition
    return {
        "digest": current.digest,
        "unit_file": None if current.unit_file is None else _file_json(current.unit_file),
        "dropins": [_file_json(f) for f in current.dropins],
        "command": current.command,
        "scripts": [_file_json(f) for f in current.scripts],
        "previous_digest": None if stored.previous is None else stored.previous.digest,
        "changes": definition_changes(stored),
    }


def _file_json(file: DefinitionFile) -> dict[str, str | None]:
    return {"path": file.path, "digest": file.digest}


def stats_json(stats: UnitStats) -> StatsJson:
    """One unit's statistics."""
    return {
        "unit": unit_of(stats.unit),
        "user": user_of(stats.unit),
        "host": stats.host,
        "runs": stats.runs,
        "successes": stats.successes,
        "failures": stats.failures,
        "skipped": stats.skipped,
        "success_rate": stats.success_rate,
        "duration_p50_seconds": stats.duration_p50_seconds,
        "duration_p95_seconds": stats.duration_p95_seconds,
        "duration_max_seconds": stats.duration_max_seconds,
        "cpu_p50_seconds": stats.cpu_p50_seconds,
        "cpu_p95_seconds": stats.cpu_p95_seconds,
        "memory_peak_p50_bytes": stats.memory_peak_p50_bytes,
        "memory_peak_p95_bytes": stats.memory_peak_p95_bytes,
        "last_success_at": iso_time(stats.last_success_usec),
        "last_failure_at": iso_time(stats.last_failure_usec),
        "consecutive_failures": stats.consecutive_failures,
        "trend": None if stats.trend is None else round(stats.trend, 3),
    }


def status_json(status: history.UnitStatus) -> StatusJson:
    """One unit's current standing."""
    return {
        "unit": unit_of(status.unit),
        "user": user_of(status.unit),
        "host": status.host,
        "last_result": status.last_result,
        "last_started_at": iso_time(status.last_started_usec),
        "next_run_at": iso_time(status.next_run_usec),
        "success_rate": status.success_rate,
        "consecutive_failures": status.consecutive_failures,
        "running": status.running,
        "open_problems": list(status.problems),
    }


def cell(text: str) -> str:
    """Names come from the store: never let them move the cursor or recolour the terminal."""
    if text.isascii() and text.isprintable():  # the usual name: printable() would keep it
        return text
    return printable(text.encode("utf-8", "surrogateescape"))


def table_time(usec: int | None) -> str:
    """A time for a table: local, to the second."""
    return "-" if usec is None else _local_second(usec // 1_000_000, _zone())[0]


def clock_time(usec: int) -> str:
    """The time of day of an output line, local, to the millisecond (zones are whole seconds)."""
    return f"{_local_second(usec // 1_000_000, _zone())[1]}.{usec % 1_000_000 // 1000:03d}"


def _zone() -> tuple[object, ...]:
    """What tzset sets: a cached second is formatted again when the zone changes."""
    return (time.timezone, time.altzone, time.tzname)


@functools.lru_cache(maxsize=4096)
def _local_second(second: int, zone: tuple[object, ...]) -> tuple[str, str]:
    """A second as a table and an output line show it, formatted once: the dashboard shows a
    run's start many times. The C library's local time, as ``local_time`` reads it (a test
    holds them equal), without a datetime: `stats` of 1,000 units formats 2,000."""
    t = time.localtime(second)
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {clock}", clock


def percent(rate: float | None) -> str:
    """A rate for a table: ``97.5%``."""
    return "-" if rate is None else f"{rate:.1%}"


def _result(run: history.RecordedRun) -> str:
    return "running" if run.running else cell(run.result or "-")


def _priority(priority: int) -> str:
    return _PRIORITIES[priority] if 0 <= priority < len(_PRIORITIES) else str(priority)
