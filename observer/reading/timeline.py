"""``observer timeline`` drawn: the picture of the day (``day``) as lines of text, and as JSON.

Pure: the picture and a width in, lines out. Each line is at most ``width`` characters (not
counting colour codes): a row per unit with a bar per run on a shared time axis, so that
runs at the same time stand in the same columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypedDict

from observer.reading import day
from observer.reading.history import RecordedRun
from observer.reading.render import cell, iso_time, local_time
from observer.spans import human_duration

# The character of each kind of run, the worst first where runs share a column.
CHARACTERS = {"fail": "X", "running": ">", "ok": "=", "skipped": "-"}
OVERLAPPED = "*"  # runs of one unit at the same time
CLIPPED = "<"  # a run that began before the window
GRID = "."  # an empty column under a tick of the axis
_COLOURS = {"fail": "31", "running": "34", "ok": "32", "skipped": "2", OVERLAPPED: "33"}
_LEGEND = (
    "= ok", "X failed", "> running", "- skipped", "* runs of one unit at once",
    "< began earlier",
)  # fmt: skip
# The fewest columns of time worth drawing.
MIN_COLUMNS = 10
# Overlaps listed under the picture; --json has them all.
LISTED_OVERLAPS = 10


class TimelineRunJson(TypedDict):
    id: int
    invocation_id: str | None
    started_at: str | None
    finished_at: str | None
    result: str | None
    kind: str  # ok, fail, running, skipped
    duration_seconds: float | None
    began_before_window: bool


class TimelineUnitJson(TypedDict):
    host: str
    unit: str
    runs: list[TimelineRunJson]


class OverlapJson(TypedDict):
    host: str
    runs: list[int]
    units: list[str]
    from_time: str | None
    to_time: str | None
    seconds: float
    most_at_once: int


class TimelineJson(TypedDict):
    from_time: str | None
    to_time: str | None
    units: list[TimelineUnitJson]
    overlaps: list[OverlapJson]


def draw(runs: Sequence[RecordedRun], window: day.Window, width: int, now_usec: int) -> list[str]:
    """The lines ``observer timeline`` prints for ``runs`` in ``window`` at ``width``."""
    return text_lines(day.lay_out(runs, window, now_usec), width)


def text_lines(picture: day.Picture, width: int, *, colour: bool = False) -> list[str]:
    """The picture as lines of at most ``width`` characters: axis, rows, legend, overlaps."""
    several_hosts = len({row.host for row in picture.rows}) > 1
    labels = [_label(row, several_hosts) for row in picture.rows]
    label_width = min(max((len(label) for label in labels), default=4), max(8, width // 3))
    columns = width - label_width - 1
    if columns < MIN_COLUMNS:
        raise ValueError(f"a width of {width} leaves no room for the picture: use at least "
                         f"{label_width + 1 + MIN_COLUMNS}")  # fmt: skip
    grid = _Grid(picture.window, columns)
    axis = day.ticks(picture.window, picture.window.span_usec * 6 / columns)
    tick_columns = {grid.column(tick.usec) for tick in axis}
    lines = [(" " * (label_width + 1) + _axis(axis, grid)).rstrip()]
    for row, label in zip(picture.rows, labels, strict=True):
        cells = grid.cells(row, tick_columns)
        lines.append(f"{_fit(label, label_width):<{label_width}} {_paint(cells, colour)}".rstrip())
    lines += _wrapped(_LEGEND, width)
    lines += _overlap_lines(picture.overlaps, width)
    return lines


class _Grid:
    """Columns of equal time across the window; a run covers each column it touches."""

    def __init__(self, window: day.Window, columns: int) -> None:
        self.window = window
        self.columns = columns

    def column(self, usec: int) -> int:
        offset = (usec - self.window.start_usec) * self.columns // self.window.span_usec
        return min(max(offset, 0), self.columns - 1)

    def columns_of(self, bar: day.Bar) -> range:
        """The columns a bar covers: at least the one it starts in, however short."""
        first = self.column(bar.start_usec)
        end = -(-(bar.end_usec - self.window.start_usec) * self.columns // self.window.span_usec)
        return range(first, max(first + 1, min(end, self.columns)))

    def cells(self, row: day.Row, tick_columns: set[int]) -> list[str]:
        """A row's character in each column: its runs' (the worst of those sharing one)."""
        covering: list[list[day.Bar]] = [[] for _ in range(self.columns)]
        for bar in row.bars:
            for column in self.columns_of(bar):
                covering[column].append(bar)
        cells = [GRID if c in tick_columns else " " for c in range(self.columns)]
        for column, bars in enumerate(covering):
            if bars:
                cells[column] = _character(bars)
        for bar in row.bars:
            span = self.columns_of(bar)
            if bar.clipped and len(span) > 1 and cells[span.start] != OVERLAPPED:
                cells[span.start] = CLIPPED
        return cells


def _character(bars: list[day.Bar]) -> str:
    """Of the runs in one column: * when two of them ran at the same time, else the worst."""
    for i, one in enumerate(bars):
        for other in bars[i + 1 :]:
            if one.overlapped and other.overlapped and _together(one, other):
                return OVERLAPPED
    kinds = {bar.kind for bar in bars}
    return next(CHARACTERS[kind] for kind in CHARACTERS if kind in kinds)


def _together(one: day.Bar, other: day.Bar) -> bool:
    return one.start_usec < other.end_usec and other.start_usec < one.end_usec


def _axis(axis: Sequence[day.Tick], grid: _Grid) -> str:
    """The tick labels, each starting at its column, none running into the next."""
    line = ""
    for tick in axis:
        column = grid.column(tick.usec)
        if column >= len(line) + (1 if line else 0) and column + len(tick.label) <= grid.columns:
            line = line.ljust(column) + tick.label
    return line


def _label(row: day.Row, several_hosts: bool) -> str:
    return cell(f"{row.host}: {row.unit}" if several_hosts else row.unit)


def _fit(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters (unit names differ at both ends)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}~{text[len(text) - (width - 1 - head) :]}"


def _paint(cells: list[str], colour: bool) -> str:
    """The cells, each stretch of one character in its colour when ``colour``."""
    if not colour:
        return "".join(cells)
    kinds = {character: kind for kind, character in CHARACTERS.items()}
    painted = []
    for character, stretch in itertools.groupby(cells):
        text = "".join(stretch)
        code = _COLOURS.get(kinds.get(character, character))
        painted.append(text if code is None else f"\x1b[{code}m{text}\x1b[0m")
    return "".join(painted)


def _wrapped(items: Sequence[str], width: int) -> list[str]:
    """``items`` two spaces apart, on as few lines of ``width`` as they need."""
    lines = [""]
    for item in items:
        joined = f"{lines[-1]}  {item}" if lines[-1] else item
        if len(joined) <= width or not lines[-1]:
            lines[-1] = joined[:width]
        else:
            lines.append(item[:width])
    return lines


def _overlap_lines(overlaps: Sequence[day.Overlap], width: int) -> list[str]:
    lines = [_fit_end(_overlap_text(o), width) for o in overlaps[:LISTED_OVERLAPS]]
    if len(overlaps) > LISTED_OVERLAPS:
        more = len(overlaps) - LISTED_OVERLAPS
        lines.append(_fit_end(f"and {more} more overlaps (--json lists them all)", width))
    return lines


def _overlap_text(overlap: day.Overlap) -> str:
    start = local_time(overlap.start_usec).strftime("%H:%M:%S")
    end = local_time(overlap.end_usec).strftime("%H:%M:%S")
    seconds = (overlap.end_usec - overlap.start_usec) / 1e6
    runs = ", ".join(f"{run.unit} #{run.id}" for run in overlap.runs)
    at_once = f"{human_duration(seconds)}, {overlap.most_at_once} at once"
    return cell(f"overlap {start}-{end} ({at_once}): {runs}")


def _fit_end(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def timeline_json(picture: day.Picture) -> TimelineJson:
    """The picture for scripts: each unit's runs in the window, and the overlaps found."""
    return {
        "from_time": iso_time(picture.window.start_usec),
        "to_time": iso_time(picture.window.end_usec),
        "units": [
            {"host": row.host, "unit": row.unit, "runs": [_run_json(bar) for bar in row.bars]}
            for row in picture.rows
        ],
        "overlaps": [_overlap_json(overlap) for overlap in picture.overlaps],
    }


def _run_json(bar: day.Bar) -> TimelineRunJson:
    run = bar.run
    return {
        "id": run.id,
        "invocation_id": run.invocation_id,
        "started_at": iso_time(run.started_usec),
        "finished_at": iso_time(run.finished_usec),
        "result": run.result,
        "kind": bar.kind,
        "duration_seconds": run.duration_seconds,
        "began_before_window": bar.clipped,
    }


def _overlap_json(overlap: day.Overlap) -> OverlapJson:
    return {
        "host": overlap.runs[0].host,
        "runs": [run.id for run in overlap.runs],
        "units": [run.unit for run in overlap.runs],
        "from_time": iso_time(overlap.start_usec),
        "to_time": iso_time(overlap.end_usec),
        "seconds": (overlap.end_usec - overlap.start_usec) / 1e6,
        "most_at_once": overlap.most_at_once,
    }
