"""Static HTML pages of every unit's health and history, written from the store.

The pages need no server and no JavaScript: inline CSS and SVG, links between files. Every
page is written to a temporary file beside it and renamed into place, the overview last.

What a generation costs follows what changed: each unit has a version the writers bump
(``store.note_changed``), and the manifest keeps, per unit, the version its pages were
written at, its row of the overview and a fingerprint of each run page. A unit whose version
and next run are unchanged and whose pages are all there is not read again; of a unit read
again, only the run pages whose fingerprint changed are written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from observer import __version__
from observer.dashboard import charts, queries
from observer.dashboard.day_page import DayLink, write_day_pages
from observer.dashboard.fleet_page import FLEET, fleet_rows
from observer.dashboard.markup import Shell, run_rows, stylesheet, template
from observer.dashboard.markup import run_page as run_html
from observer.dashboard.site import (
    MANIFEST,
    STYLESHEET,
    DashboardError,
    DayDrawing,
    Listing,
    Manifest,
    PageSet,
    UnitEntry,
    list_directory,
    manifest_json,
    read_manifest,
    remove_stale,
    write_atomically,
)
from observer.dashboard.views import (
    health,
    output_rows,
    overview_order,
    run_kind,
    run_page,
    run_row,
    sample,
    unit_page,
    unit_row,
)
from observer.dashboard.writer import Writer
from observer.reading import history
from observer.reading.render import human_bytes, local_time, percent, run_facts, table_time
from observer.reading.stats import UnitStats
from observer.spans import human_duration

__all__ = ["INDEX", "Cache", "Limits", "Report", "Stopped", "generate", "run_page", "unit_page"]

# Bump when a run page would look different for the same run: old pages are then rewritten.
PAGE_FORMAT = 3
INDEX = "index.html"


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
    day_pages: int = 0  # written at every generation, apart from the pages counted above


class Stopped(Exception):
    """Generation was asked to stop; the overview was not rewritten."""


def _write_file(path: Path, data: bytes) -> None:
    write_atomically(path, data)  # looked up at each call: tests watch the order of writes


@dataclass(slots=True)
class _Site:
    """Where pages go: written atomically, in order, remembered so that stale ones go."""

    directory: Path
    should_stop: Callable[[], bool]
    listing: Listing
    writer: Writer
    shell: Shell | None = None  # the frame of the run pages, drawn once the hosts are known
    names: set[str] = field(default_factory=set)
    written: int = 0
    unchanged: int = 0

    def write(self, name: str, text: str | bytes) -> None:
        if self.should_stop():
            raise Stopped
        self.names.add(name)
        self.written += 1
        self.writer.put(self.directory / name, text if isinstance(text, bytes) else text.encode())

    def keep(self, name: str) -> None:
        self.names.add(name)
        self.unchanged += 1

    def keep_all(self, pages: PageSet) -> bool:
        """Keep these pages if they are all there; False if one is missing."""
        names = pages.names()
        if not self.listing.names.issuperset(names):
            return False
        self.names.update(names)
        self.unchanged += len(names)
        return True


@dataclass(frozen=True, slots=True)
class _Read:
    """What a generation read of a unit whose pages it writes."""

    status: history.UnitStatus
    stats: UnitStats
    runs: list[history.RecordedRun]
    recorded: int


@dataclass(slots=True)
class Cache:
    """What the last generation into a directory wrote, per unit (the manifest, in memory).

    A caller that writes into one directory again and again may keep one, so that the
    manifest is read only once; without one (`observer report`, each of the daemon's
    rewrites, a process of its own), a generation starts from the manifest on disk.
    """

    setting: str = ""
    hosts: tuple[str, ...] = ()
    units: dict[str, UnitEntry] = field(default_factory=dict)
    days: DayDrawing | None = None


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
    site = _Site(directory, should_stop, list_directory(directory), Writer(_write_file))
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")  # every page from one snapshot, while the daemon writes on
    try:
        setting, hosts, units, days = _write_site(conn, site, cache, limits, now_usec)
        site.writer.close()
    except BaseException:
        site.writer.abandon()
        raise
    finally:
        if began:
            conn.rollback()
    cache.hosts, cache.units = hosts, units
    manifest = Manifest(setting, hosts, units, cache.days)
    write_atomically(directory / MANIFEST, manifest_json(manifest))
    removed = remove_stale(directory, site.listing, site.names)
    return Report(site.written, site.unchanged, removed, days)


def _write_site(
    conn: sqlite3.Connection, site: _Site, cache: Cache, limits: Limits, now_usec: int
) -> tuple[str, tuple[str, ...], dict[str, UnitEntry], int]:
    """Every page that changed: the units' (read one by one), the fleet's, the overview;
    returns the setting, the hosts and the units, for the manifest, and the day pages."""
    setting = _setting(conn, site.directory, limits)
    if cache.setting != setting:
        kept = read_manifest(site.directory, setting) or Manifest(setting, (), {})
        cache.setting, cache.hosts, cache.units = setting, kept.hosts, kept.units
        cache.days = kept.days
    units, fresh, hosts = _units_and_hosts(conn, cache, setting)
    common = {
        "version": __version__,
        "host": ", ".join(hosts),
        "generated": table_time(now_usec),
        "timezone": local_time(now_usec).strftime("UTC%z"),
    }
    site.shell = Shell.of(common)
    _write_stylesheet(site)
    ordered = sorted(units, key=lambda name: overview_order(name, units[name].consecutive_failures))
    shown, hidden = ordered[: limits.units], ordered[limits.units :]
    for name in shown:  # each unit read just before its pages are written: see writer.py
        unit = units[name]
        if name not in fresh and unit.pages is not None and site.keep_all(unit.pages):
            continue
        status, stats = fresh.get(name) or _summary(conn, name)
        runs = history.unit_history(conn, name, limits.history_runs)
        if name in fresh:
            unit.row = _row(status, stats, runs, limits)
        known = cache.units.get(name)
        written = {} if known is None or known.pages is None else known.pages.fingerprints()
        read = _Read(status, stats, runs, queries.run_count(conn, name))
        unit.pages = PageSet.of(_write_pages(conn, site, read, written, limits, common))
    for name in hidden:
        units[name].pages = None  # removed below, as stale
        if name in fresh:
            status, stats = fresh[name]
            runs = history.unit_history(conn, name, limits.sparkline_runs)
            units[name].row = _row(status, stats, runs, limits)
    # The day pages of these hosts, drawn again (or kept: _day_pages), then the overview.
    days, drawn = _day_pages(conn, site, cache, hosts, common, now_usec)
    _write_overview(conn, site, units, shown, common, days)
    return setting, hosts, units, drawn


def _write_stylesheet(site: _Site) -> None:
    """The style sheet the pages link, unless it is there as it should be (not counted)."""
    css, path = stylesheet(), site.directory / STYLESHEET
    site.names.add(STYLESHEET)
    with contextlib.suppress(OSError):
        if STYLESHEET in site.listing.names and path.read_bytes() == css:
            return
    site.writer.put(path, css)


def _units_and_hosts(
    conn: sqlite3.Connection, cache: Cache, setting: str
) -> tuple[dict[str, UnitEntry], dict[str, tuple[history.UnitStatus, UnitStats]], tuple[str, ...]]:
    """The units (those read again in the second dict, see ``_read_units``) and the hosts
    their runs come from."""
    units, fresh = _read_units(conn, cache)
    hosts = tuple(sorted({h for u in units.values() for h in u.hosts})) or (socket.gethostname(),)
    if hosts != cache.hosts and len(fresh) < len(units):
        # Every page names the hosts: read the other units too, to write all pages again.
        units, more = _read_units(conn, Cache(setting, hosts, {n: units[n] for n in fresh}))
        fresh.update(more)
    return units, fresh, hosts


def _write_overview(
    conn: sqlite3.Connection,
    site: _Site,
    units: dict[str, UnitEntry],
    shown: list[str],
    common: dict[str, str],
    days: list[DayLink],
) -> None:
    """The overview of the units shown, and on a central database the fleet's page."""
    fleet_hosts, fleet = fleet_rows(conn)
    if fleet_hosts:  # a central database: hosts by units
        site.write(FLEET, template("fleet.html.j2").render(**common, hosts=fleet_hosts, rows=fleet))
    site.write(
        INDEX,
        template("overview.html.j2").render(
            **common,
            days=days,
            fleet=len(fleet_hosts),
            rows=[Markup(units[name].row) for name in shown],
            units=len(units),
            hidden=len(units) - len(shown),
            failing=sum(1 for u in units.values() if u.health == "failing"),
            running=sum(1 for u in units.values() if u.running),
        ),
    )


# A day view drawn within this much CPU time is drawn at every generation; one that takes
# longer (a busy day: about 5 s for 130,000 runs) is kept while younger than this many times
# its cost, so that drawing it takes at most a tenth of the time.
DAY_ALWAYS_SECONDS = 0.5
DAY_KEPT_PER_COST = 10


def _day_pages(
    conn: sqlite3.Connection,
    site: _Site,
    cache: Cache,
    hosts: tuple[str, ...],
    common: dict[str, str],
    now_usec: int,
) -> tuple[list[DayLink], int]:
    """The day pages, drawn again unless those of the last generation may stay (see
    DAY_KEPT_PER_COST); with how many were drawn."""
    kept = cache.days
    if kept is not None and hosts == cache.hosts and _day_may_stay(kept, site, now_usec):
        site.names.update(name for _, name in kept.pages)
        return [DayLink(host, name) for host, name in kept.pages], 0
    began = time.process_time()
    links = write_day_pages(conn, site, common, now_usec)
    pages = tuple((link.host, link.href) for link in links)
    cache.days = DayDrawing(now_usec, time.process_time() - began, pages)
    return links, len(links)


def _day_may_stay(kept: DayDrawing, site: _Site, now_usec: int) -> bool:
    age = (now_usec - kept.at_usec) / 1e6
    return (
        kept.cost >= DAY_ALWAYS_SECONDS
        and 0 <= age < DAY_KEPT_PER_COST * kept.cost
        and site.listing.names.issuperset(name for _, name in kept.pages)
    )


def _setting(conn: sqlite3.Connection, directory: Path, limits: Limits) -> str:
    """What every page depends on besides its unit: when it changes, every page is written."""
    database = None
    for _, name, path in conn.execute("PRAGMA database_list"):
        if name == "main" and path:
            try:
                info = os.stat(path)
            except OSError:
                break
            # Another database (or a new one in its place) has versions of its own.
            database = (path, info.st_dev, info.st_ino)
    setting = (PAGE_FORMAT, __version__, str(directory), database, limits, time.tzname)
    text = repr((*setting, time.timezone))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _read_units(
    conn: sqlite3.Connection, cache: Cache
) -> tuple[dict[str, UnitEntry], dict[str, tuple[history.UnitStatus, UnitStats]]]:
    """Every unit with runs or a timer: as known where its key is unchanged, else read again
    (its row of the overview is left to write with its pages); and the status and stats of
    those read again."""
    versions = queries.unit_versions(conn)
    scheduled = history.next_runs(conn)
    names = {*history.recorded_units(conn), *scheduled}
    keys = {name: (versions.get(name, 0), scheduled.get(name)) for name in names}
    units = {
        name: unit for name, unit in cache.units.items() if name in keys and unit.key == keys[name]
    }
    fresh = {}
    for status, stats in _per_unit(history.unit_summaries(conn, keys.keys() - units.keys())):
        name = status.unit
        fresh[name] = (status, stats)
        units[name] = UnitEntry(
            key=keys[name],
            hosts=tuple(queries.unit_hosts(conn, name)),
            health=health(status),
            consecutive_failures=status.consecutive_failures,
            running=status.running,
            row="",
            pages=None,
        )
    return units, fresh


def _summary(conn: sqlite3.Connection, unit: str) -> tuple[history.UnitStatus, UnitStats]:
    """The status and stats of a unit whose key is unchanged, but whose pages are missing."""
    [(status, stats)] = _per_unit(history.unit_summaries(conn, [unit]))
    return status, stats


def _per_unit(
    rows: list[tuple[history.UnitStatus, UnitStats]],
) -> list[tuple[history.UnitStatus, UnitStats]]:
    """One row per unit: on a central database (a row per host), the host worst off (most
    failures in a row, then running, then the newest start); its page lists every host's runs."""
    worst: dict[str, tuple[history.UnitStatus, UnitStats]] = {}
    for status, stats in rows:
        known = worst.get(status.unit)
        rank = (status.consecutive_failures, status.running, status.last_started_usec or 0)
        if known is None or rank > (
            known[0].consecutive_failures,
            known[0].running,
            known[0].last_started_usec or 0,
        ):
            worst[status.unit] = (status, stats)
    return list(worst.values())


def _row(
    status: history.UnitStatus,
    stats: UnitStats,
    runs: list[history.RecordedRun],
    limits: Limits,
) -> str:
    """A unit's row of the overview, as HTML."""
    row = unit_row(status, stats, runs, limits.sparkline_runs)
    return template("overview_row.html.j2").render(row=row)


def _write_pages(
    conn: sqlite3.Connection,
    site: _Site,
    unit: _Read,
    written: dict[str, str],
    limits: Limits,
    common: dict[str, str],
) -> dict[str, str]:
    """Write a unit's pages, and of its run pages those that changed: name -> fingerprint."""
    outputs = queries.output_summaries(conn, unit.status.unit, limits.history_runs)
    pages = _write_run_pages(conn, site, unit.runs, outputs, written, limits, common)
    for name in _write_unit_pages(site, unit, limits, common):
        pages[name] = ""
    return pages


def _write_unit_pages(
    site: _Site, unit: _Read, limits: Limits, common: dict[str, str]
) -> list[str]:
    status, stats, runs = unit.status, unit.stats, unit.runs
    count = max(1, -(-len(runs) // limits.page_runs))
    names = [unit_page(status.unit, n) for n in range(1, count + 1)]
    facts = [
        ("Runs", str(unit.recorded)),
        ("Success", percent(status.success_rate)),
        ("Failed in a row", str(status.consecutive_failures)),
        ("p50", human_duration(stats.duration_p50_seconds)),
        ("p95", human_duration(stats.duration_p95_seconds)),
        ("Max", human_duration(stats.duration_max_seconds)),
        ("Skipped", str(stats.skipped)),
        ("CPU p50", human_duration(stats.cpu_p50_seconds)),
        ("CPU p95", human_duration(stats.cpu_p95_seconds)),
        ("Memory peak p50", human_bytes(stats.memory_peak_p50_bytes)),
        ("Memory peak p95", human_bytes(stats.memory_peak_p95_bytes)),
        ("Last success", table_time(stats.last_success_usec)),
        ("Last failure", table_time(stats.last_failure_usec)),
        ("Next run", table_time(status.next_run_usec)),
        ("Open problems", ", ".join(status.problems) or "none"),
    ]
    duration_chart = charts.chart([sample(run) for run in runs])
    # The same picture on each page of the unit: drawn once.
    chart_svg = Markup(
        "" if duration_chart is None else template("chart.svg.j2").render(chart=duration_chart)
    )
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
                chart_svg=chart_svg,
                rows=(rows := [run_row(run) for run in shown]),
                rows_html=run_rows(rows),
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
    outputs: dict[str, queries.OutputSummary],
    written: dict[str, str],
    limits: Limits,
    common: dict[str, str],
) -> dict[str, str]:
    """Write the pages of ``runs`` that changed; their fingerprints by page name."""
    fingerprints: dict[str, str] = {}
    changed: list[tuple[history.RecordedRun, str | None, str | None]] = []
    for i, run in enumerate(runs):
        name = run_page(run.id)
        newer = run_page(runs[i - 1].id) if i > 0 else None
        older = run_page(runs[i + 1].id) if i + 1 < len(runs) else None
        shown = (
            outputs.get(run.invocation_id or ""),
            newer,
            older,
            common["host"],
            limits.output_lines,
        )
        fingerprint = _fingerprint(run, shown)
        fingerprints[name] = fingerprint
        if written.get(name) == fingerprint and name in site.listing.names:
            site.keep(name)
        else:
            changed.append((run, newer, older))
    clock, shell = _Clock(), site.shell
    assert shell is not None  # drawn before any unit's pages
    # Their output read a few runs at a time: a failed run's can be a megabyte.
    for start in range(0, len(changed), _OUTPUTS_AT_ONCE):
        chunk = changed[start : start + _OUTPUTS_AT_ONCE]
        details = history.run_outputs(conn, [run for run, _, _ in chunk])
        for (run, newer, older), detail in zip(chunk, details, strict=True):
            html = run_html(
                shell,
                clock.now(),
                run,
                kind=run_kind(run),
                result="running" if run.running else run.result or "-",
                unit_href=unit_page(run.unit),
                facts=run_facts(detail),
                lines=output_rows(detail, limits.output_lines),
                newer=newer,
                older=older,
            )
            site.write(run_page(run.id), html)
    return fingerprints


_OUTPUTS_AT_ONCE = 10


@dataclass(slots=True)
class _Clock:
    """The time a page says it was generated, formatted once a second."""

    second: int = -1
    text: str = ""

    def now(self) -> str:
        usec = time.time_ns() // 1000
        if usec // 1_000_000 != self.second:
            self.second, self.text = usec // 1_000_000, table_time(usec)
        return self.text


def _fingerprint(run: history.RecordedRun, shown: tuple[object, ...]) -> str:
    """Changes whenever what the run's page shows would change."""
    key = repr((PAGE_FORMAT, __version__, time.tzname, time.timezone, run, shown))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
