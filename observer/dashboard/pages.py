"""Static HTML pages of every unit's health and history, written from the store.

The pages need no server and no JavaScript: inline CSS and SVG, links between files. Every
page is written to a temporary file beside it and renamed into place, the overview last.
Run pages whose run and output have not changed since they were written are left alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from observer import __version__, history
from observer.dashboard import charts
from observer.dashboard.site import (
    MANIFEST,
    DashboardError,
    read_manifest,
    remove_stale,
    template,
    write_atomically,
)
from observer.output import dropped_marker, printable
from observer.render import count, human_duration, local_time, run_facts, table_time

# Bump when a run page would look different for the same run: old pages are then rewritten.
PAGE_FORMAT = 1
INDEX = "index.html"
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much each page shows, so that pages stay small with long histories."""

    history_runs: int = 100  # newest runs of a unit with a table row, a chart point, a page
    page_runs: int = 50  # runs per page of a unit's history
    sparkline_runs: int = 30  # bars in the overview's sparkline
    output_lines: int = 4000  # output lines on a run page (its start and its end)
    units: int = 1000  # units on the overview (failing ones first)


@dataclass(frozen=True, slots=True)
class Report:
    """What one generation did."""

    written: int
    unchanged: int
    removed: int


class Stopped(Exception):
    """Generation was asked to stop; the overview was not rewritten."""


def unit_page(unit: str, page: int = 1) -> str:
    """A file name for a unit's page, safe for any unit name: readable part plus a hash."""
    slug = _UNSAFE_IN_NAME.sub("_", unit)[:48]
    digest = hashlib.sha256(unit.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"unit-{slug}-{digest}{'' if page == 1 else f'-{page}'}.html"


def run_page(run_id: int) -> str:
    return f"run-{int(run_id)}.html"


# -- what the pages show -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    href: str
    started: str
    duration: str
    result: str
    kind: str
    exit: str
    trigger: str
    truncated: bool


@dataclass(frozen=True, slots=True)
class UnitRow:
    unit: str
    href: str
    health: str  # failing, running, ok, idle
    last_result: str
    result_kind: str  # ok, fail, running, unknown: the CSS class
    last_run: str
    last_run_href: str | None
    next_run: str
    success_rate: str
    consecutive_failures: int
    p95: str
    sparkline: charts.Sparkline


@dataclass(frozen=True, slots=True)
class OutputRow:
    time: str
    priority: str
    priority_class: str
    text: str
    dropped: bool = False


@dataclass(slots=True)
class _Site:
    """Where pages go: written atomically, remembered so that stale ones can be removed."""

    directory: Path
    should_stop: Callable[[], bool]
    names: set[str] = field(default_factory=set)
    written: int = 0
    unchanged: int = 0

    def write(self, name: str, text: str) -> None:
        if self.should_stop():
            raise Stopped
        self.names.add(name)
        self.written += 1
        write_atomically(self.directory / name, text.encode("utf-8"))

    def keep(self, name: str) -> None:
        self.names.add(name)
        self.unchanged += 1


@dataclass(slots=True)
class _Unit:
    """What a generation read of one unit, and the pages it wrote for it."""

    key: tuple[object, ...]  # changes whenever any of the unit's runs or its next run does
    status: history.UnitStatus
    stats: history.UnitStats
    runs: list[history.RecordedRun]
    recorded: int
    pages: dict[str, str] | None = None  # name -> fingerprint (run pages) or "" (unit pages)


@dataclass(slots=True)
class Cache:
    """What the last generation into a directory read, per unit.

    The daemon keeps one across rewrites, so that a rewrite reads and writes again only
    the units whose runs changed (and the overview); without one, everything is read.
    """

    setting: tuple[object, ...] = ()
    units: dict[str, _Unit] = field(default_factory=dict)


def generate(
    conn: sqlite3.Connection,
    directory: Path,
    *,
    limits: Limits = Limits(),
    now_usec: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    cache: Cache | None = None,
) -> Report:
    """Write the overview, one page set per unit and one page per shown run into ``directory``."""
    now_usec = time.time_ns() // 1000 if now_usec is None else now_usec
    cache = Cache() if cache is None else cache
    try:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as e:
        raise DashboardError(f"cannot create {str(directory)!r}: {e.strerror}") from e
    site = _Site(directory, should_stop)
    manifest = read_manifest(directory, PAGE_FORMAT)
    fingerprints: dict[str, str] = {}
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # every page from one snapshot, while the daemon writes on
    try:
        hosts = history.recorded_hosts(conn) or [socket.gethostname()]
        setting = (directory, limits, hosts, time.tzname, time.timezone)
        if cache.setting != setting:
            cache.setting, cache.units = setting, {}
        units = _read_units(conn, cache.units, limits)
        cache.units = units
        common = {
            "version": __version__,
            "host": ", ".join(hosts),
            "generated": table_time(now_usec),
            "timezone": local_time(now_usec).strftime("UTC%z"),
        }
        shown = sorted(units.values(), key=lambda u: _overview_order(u.status))[: limits.units]
        for unit in shown:
            if unit.pages is not None and all((directory / n).is_file() for n in unit.pages):
                for name in unit.pages:
                    site.keep(name)
            else:
                outputs = history.output_summaries(conn, unit.status.unit, limits.history_runs)
                pages = _write_run_pages(conn, site, unit.runs, outputs, manifest, limits, common)
                for name in _write_unit_pages(site, unit, limits, common):
                    pages[name] = ""
                unit.pages = pages
            fingerprints.update((name, f) for name, f in unit.pages.items() if f)
        rows = [_unit_row(unit, limits) for unit in shown]
        site.write(
            INDEX,
            template("overview.html.j2").render(
                **common,
                rows=rows,
                units=len(units),
                hidden=len(units) - len(shown),
                failing=sum(1 for u in units.values() if health(u.status) == "failing"),
                running=sum(1 for u in units.values() if u.status.running),
            ),
        )
    finally:
        if began:
            conn.rollback()
    write_atomically(
        directory / MANIFEST,
        json.dumps({"format": PAGE_FORMAT, "pages": fingerprints}).encode(),
    )
    return Report(site.written, site.unchanged, remove_stale(directory, site.names))


def _read_units(
    conn: sqlite3.Connection, known: dict[str, _Unit], limits: Limits
) -> dict[str, _Unit]:
    """Every unit with runs or a timer: read again where its runs changed, else as known."""
    signatures = history.unit_signatures(conn)
    scheduled = history.next_runs(conn)
    keys = {name: (signatures.get(name), scheduled.get(name)) for name in {*signatures, *scheduled}}
    units = {
        name: known[name] for name, key in keys.items() if name in known and known[name].key == key
    }
    for status, stats in history.unit_summaries(conn, keys.keys() - units.keys()):
        name = status.unit
        signature = signatures.get(name)
        units[name] = _Unit(
            key=keys[name],
            status=status,
            stats=stats,
            runs=history.unit_history(conn, name, limits.history_runs),
            recorded=0 if signature is None else signature.runs,
        )
    return units


def _overview_order(status: history.UnitStatus) -> tuple[int, int, str]:
    failing = status.consecutive_failures > 0
    return (0 if failing else 1, -status.consecutive_failures, status.unit)


def health(status: history.UnitStatus) -> str:
    """failing (its newest finished run failed), running, ok, or idle (never finished)."""
    if status.consecutive_failures > 0:
        return "failing"
    if status.running:
        return "running"
    if status.success_rate is not None:
        return "ok"
    return "idle"


def _run_kind(run: history.RecordedRun) -> str:
    if run.running:
        return "running"
    return "fail" if run.failed else "ok"


def _exit_text(run: history.RecordedRun) -> str:
    if run.signal is not None:
        return f"SIG{run.signal}" if not run.signal.isdecimal() else f"signal {run.signal}"
    return "-" if run.exit_status is None else str(run.exit_status)


def _run_title(run: history.RecordedRun) -> str:
    result = "running" if run.running else run.result or "unknown result"
    return (
        f"run {run.id}: {table_time(run.started_usec)}, "
        f"{human_duration(run.duration_seconds)}, {result}"
    )


def _sample(run: history.RecordedRun) -> charts.Sample:
    return charts.Sample(
        started_usec=run.started_usec,
        seconds=run.duration_seconds,
        kind=_run_kind(run),
        title=_run_title(run),
        href=run_page(run.id),
    )


def _unit_row(unit: _Unit, limits: Limits) -> UnitRow:
    status, runs = unit.status, unit.runs
    newest = runs[0] if runs else None
    return UnitRow(
        unit=status.unit,
        href=unit_page(status.unit),
        health=health(status),
        last_result=status.last_result or "-",
        result_kind=_run_kind(newest) if newest is not None else "unknown",
        last_run=table_time(status.last_started_usec),
        last_run_href=None if newest is None else run_page(newest.id),
        next_run=table_time(status.next_run_usec),
        success_rate=_percent(status.success_rate),
        consecutive_failures=status.consecutive_failures,
        p95=human_duration(unit.stats.duration_p95_seconds),
        sparkline=charts.sparkline([_sample(r) for r in reversed(runs)], limits.sparkline_runs),
    )


def _run_row(run: history.RecordedRun) -> RunRow:
    return RunRow(
        id=run.id,
        href=run_page(run.id),
        started=table_time(run.started_usec),
        duration=human_duration(run.duration_seconds),
        result="running" if run.running else run.result or "-",
        kind=_run_kind(run),
        exit=_exit_text(run),
        trigger=run.trigger or "-",
        truncated=run.output_truncated,
    )


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _write_unit_pages(
    site: _Site, unit: _Unit, limits: Limits, common: dict[str, str]
) -> list[str]:
    status, stats, runs = unit.status, unit.stats, unit.runs
    count = max(1, -(-len(runs) // limits.page_runs))
    names = [unit_page(status.unit, n) for n in range(1, count + 1)]
    facts = [
        ("Runs", str(unit.recorded)),
        ("Success", _percent(status.success_rate)),
        ("Failed in a row", str(status.consecutive_failures)),
        ("p50", human_duration(stats.duration_p50_seconds)),
        ("p95", human_duration(stats.duration_p95_seconds)),
        ("Max", human_duration(stats.duration_max_seconds)),
        ("Last success", table_time(stats.last_success_usec)),
        ("Last failure", table_time(stats.last_failure_usec)),
        ("Next run", table_time(status.next_run_usec)),
    ]
    duration_chart = charts.chart([_sample(run) for run in runs])
    for page, name in enumerate(names, start=1):
        shown = runs[(page - 1) * limits.page_runs : page * limits.page_runs]
        site.write(
            name,
            template("unit.html.j2").render(
                **common,
                unit=status.unit,
                health=health(status),
                facts=facts,
                chart=duration_chart,
                rows=[_run_row(run) for run in shown],
                page=page,
                pages=list(enumerate(names, start=1)),
                newer=names[page - 2] if page > 1 else None,
                older=names[page] if page < count else None,
                recorded=unit.recorded,
                capped=unit.recorded > len(runs) and page == count,
                shown_runs=len(runs),
            ),
        )
    return names


def _write_run_pages(
    conn: sqlite3.Connection,
    site: _Site,
    runs: Sequence[history.RecordedRun],
    outputs: dict[str, history.OutputSummary],
    manifest: dict[str, str],
    limits: Limits,
    common: dict[str, str],
) -> dict[str, str]:
    """Write the pages of ``runs`` that changed; their fingerprints by page name."""
    fingerprints: dict[str, str] = {}
    for i, run in enumerate(runs):
        name = run_page(run.id)
        newer = run_page(runs[i - 1].id) if i > 0 else None
        older = run_page(runs[i + 1].id) if i + 1 < len(runs) else None
        shown = (outputs.get(run.invocation_id), newer, older, common["host"], limits.output_lines)
        fingerprint = _fingerprint(run, shown)
        fingerprints[name] = fingerprint
        if manifest.get(name) == fingerprint and (site.directory / name).is_file():
            site.keep(name)
            continue
        detail = history.run_detail(conn, str(run.id))
        site.write(
            name,
            template("run.html.j2").render(
                **{**common, "generated": table_time(time.time_ns() // 1000)},
                run=run,
                kind=_run_kind(run),
                result="running" if run.running else run.result or "-",
                unit_href=unit_page(run.unit),
                facts=run_facts(detail),
                lines=_output_rows(detail, limits.output_lines),
                newer=newer,
                older=older,
            ),
        )
    return fingerprints


def _fingerprint(run: history.RecordedRun, shown: tuple[object, ...]) -> str:
    """Changes whenever what the run's page shows would change."""
    key = repr((PAGE_FORMAT, __version__, time.tzname, time.timezone, run, shown))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _output_rows(detail: history.RunDetail, limit: int) -> list[OutputRow]:
    entries = list(detail.output)
    hidden: list[history.LoggedLine | history.DroppedLines] = []
    if len(entries) > limit:
        # Keep the start and the end, as the output budget does.
        head, tail = limit // 2, limit - limit // 2
        hidden = entries[head : len(entries) - tail]
        entries = [*entries[:head], *entries[len(entries) - tail :]]
    rows = []
    for i, entry in enumerate(entries):
        if hidden and i == limit // 2:
            stored = sum(1 for e in hidden if isinstance(e, history.LoggedLine))
            rows.append(
                OutputRow(
                    "", "", "", f"[... {count(stored, 'more line')} not shown here: "
                    f"'observer show {detail.run.id}' prints them all ...]", dropped=True,
                )
            )  # fmt: skip
        if isinstance(entry, history.DroppedLines):
            rows.append(OutputRow("", "", "", dropped_marker(entry.lines), dropped=True))
            continue
        priority = entry.priority
        rows.append(
            OutputRow(
                time=local_time(entry.realtime_usec).strftime("%H:%M:%S.%f")[:-3],
                priority=_PRIORITIES[priority] if 0 <= priority < 8 else str(priority),
                priority_class=f"p{priority}" if 0 <= priority < 8 else "",
                text=printable(entry.message),
            )
        )
    return rows
