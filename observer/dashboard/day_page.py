"""The dashboard's day view: the last 24 hours of one host as SVG, a row per unit, a rect per run.

The picture is the timeline's (``reading.day``: where each run falls, which runs overlap),
drawn in pixels instead of characters. Written at every generation: it is bounded by a day's
runs, and it changes with the time as much as with them.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from markupsafe import Markup

from observer import users
from observer.dashboard import charts
from observer.dashboard.markup import escape, template
from observer.dashboard.views import run_page
from observer.dashboard.writer import Writer
from observer.reading import day, history, window
from observer.reading.render import table_time
from observer.spans import human_duration
from observer.store import hosts

DAY_USEC = 86_400 * 1_000_000
PAGE = "day.html"
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
# The picture's geometry, in pixels.
WIDTH = 1100
LEFT = 240  # the units' names
RIGHT = 16
TOP = 24  # the axis' labels
ROW = 22
BAR = 14
LABEL_CHARACTERS = 34
TICK_SPACING = 70  # the fewest pixels between two labels of the axis
LISTED_OVERLAPS = 100  # under the picture (a unit running every minute overlaps often)
LISTED_RUNS = 10  # of each


class PageWriter(Protocol):
    """Where pages.generate writes its pages (its ``_Site``): the day pages go there too."""

    directory: Path
    names: set[str]
    writer: Writer


@dataclass(frozen=True, slots=True)
class DayRect:
    """A run: x, y its top left corner."""

    x: float
    y: float
    width: float
    height: float
    kind: str  # ok, fail, running, skipped: the CSS class
    overlapped: bool  # another run of its unit ran at the same time
    title: str  # unit, start, duration, result: shown on hover
    href: str | None  # its run page, when the dashboard has one


@dataclass(frozen=True, slots=True)
class DayLabel:
    y: float
    text: str
    title: str


@dataclass(frozen=True, slots=True)
class DayChart:
    width: int
    height: int
    left: int
    plot_width: int
    labels: list[DayLabel]
    rects: list[DayRect]
    ticks: list[charts.Tick]


@dataclass(frozen=True, slots=True)
class DayLink:
    """A day page, as the overview links it."""

    host: str
    href: str


def day_page(host: str, several: bool) -> str:
    """The day page of ``host``: ``day.html``, or on a central database one per host."""
    if not several:
        return PAGE
    # A readable part and a hash: no other file of the directory is taken for ours.
    slug = _UNSAFE_IN_NAME.sub("_", host)[:48]
    digest = hashlib.sha256(host.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"day-{slug}-{digest}.html"


def day_chart(picture: day.Picture, linked: Callable[[int], str | None]) -> DayChart:
    """The picture in pixels; ``linked`` gives a run's page (None: it has none)."""
    plot_width = WIDTH - LEFT - RIGHT
    shown = picture.window

    def x_of(usec: int) -> float:
        return round(LEFT + shown.fraction(usec) * plot_width, 1)

    labels, rects = [], []
    for i, row in enumerate(picture.rows):
        top = TOP + i * ROW
        labels.append(DayLabel(top + ROW / 2 + 4, _cut(row.unit), row.unit))
        for bar in row.bars:
            x = x_of(bar.start_usec)
            width = max(x_of(bar.end_usec) - x, 2.0)  # a run of a second still shows
            rects.append(
                DayRect(x, top + (ROW - BAR) / 2, round(width, 1), BAR, bar.kind,
                        bar.overlapped, _title(bar.run), linked(bar.run.id))
            )  # fmt: skip
    spacing = shown.span_usec * TICK_SPACING / plot_width
    ticks = [charts.Tick(x_of(t.usec), t.label) for t in day.ticks(shown, spacing)]
    height = TOP + max(len(picture.rows), 1) * ROW + 4
    return DayChart(WIDTH, height, LEFT, plot_width, labels, rects, ticks)


def rects_svg(rects: list[DayRect]) -> Markup:
    """Each run's rect with its tooltip, linked to its page where it has one (every value
    escaped here)."""
    parts = []
    for r in rects:
        kind = escape(f"{r.kind} overlapped" if r.overlapped else r.kind)
        rect = (
            f'<rect class="{kind}" x="{r.x}" y="{r.y}" width="{r.width}" height="{r.height}">'
            f"<title>{escape(r.title)}</title></rect>"
        )
        parts.append(f'<a href="{escape(r.href)}">{rect}</a>\n' if r.href else f"{rect}\n")
    return Markup("".join(parts))


def _cut(unit: str) -> str:
    if len(unit) <= LABEL_CHARACTERS:
        return unit
    half = (LABEL_CHARACTERS - 1) // 2
    return f"{unit[:half]}…{unit[-(LABEL_CHARACTERS - 1 - half) :]}"


def _title(run: history.RecordedRun) -> str:
    result = "running" if run.running else run.result or "-"
    duration = human_duration(run.duration_seconds)
    return f"{run.unit}: started {table_time(run.started_usec)}, {duration}, {result}"


def write_day_pages(
    conn: sqlite3.Connection, site: PageWriter, common: dict[str, str], now_usec: int
) -> list[DayLink]:
    """Write the day page of each host (one on a server's own database) into ``site``."""
    shown = day.Window(now_usec - DAY_USEC, now_usec)
    units = [unit for unit in history.recorded_units(conn) if users.ALL.shows(unit)]
    runs = window.runs_in_window(conn, shown.start_usec, units)
    is_job = day.job_test(window.timer_services(conn))
    several = hosts.several(conn)
    names = hosts.recorded_hosts(conn) if several else [common["host"]]
    links = []
    for host in names:
        mine = [run for run in runs if run.host == host] if several else runs
        picture = day.lay_out(mine, shown, now_usec, is_job)
        name = day_page(host, several)
        html = template("day.html.j2").render(
            **common,
            day_host=host,
            chart=(chart := day_chart(picture, lambda run_id: _run_page(site, run_id))),
            rects=rects_svg(chart.rects),
            runs=sum(len(row.bars) for row in picture.rows),
            overlap_count=len(picture.overlaps),
            failed=sum(1 for row in picture.rows for bar in row.bars if bar.kind == "fail"),
            overlaps=[_overlap_text(o) for o in picture.overlaps[:LISTED_OVERLAPS]],
            more_overlaps=max(len(picture.overlaps) - LISTED_OVERLAPS, 0),
        )
        site.names.add(name)  # kept: not removed as stale
        site.writer.put(site.directory / name, html.encode("utf-8"))
        links.append(DayLink(host, name))
    return links


def _run_page(site: PageWriter, run_id: int) -> str | None:
    """The run's page, if this generation wrote or kept it (the unit's newest runs have one)."""
    name = run_page(run_id)
    return name if name in site.names else None


def _overlap_text(overlap: day.Overlap) -> str:
    runs = [f"{run.unit} (run {run.id})" for run in overlap.runs[:LISTED_RUNS]]
    if len(overlap.runs) > LISTED_RUNS:
        runs.append(f"{len(overlap.runs) - LISTED_RUNS} more")
    seconds = (overlap.end_usec - overlap.start_usec) / 1e6
    return (
        f"{table_time(overlap.start_usec)}, for {human_duration(seconds)}, "
        f"{overlap.most_at_once} at once: {', '.join(runs)}"
    )
