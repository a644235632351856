"""A picture of the day: where each run falls in a window of time and which runs overlap.

Pure: runs, a window and the time now in; rows of bars, the overlaps found and the hour
ticks out, as plain numbers. The terminal (``timeline``) and the dashboard's SVG day view
draw the same picture; ``upcoming`` finds the expected overlaps with the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from observer.reading.history import RecordedRun
from observer.reading.render import local_time

# Spacings of the axis' ticks, in minutes: each divides a day (so that ticks fall on round
# times), or is whole days (ticks at midnights).
_TICK_MINUTES = (5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440, 2880, 10080, 20160)
_DAY_MINUTES = 1440
_MINUTE_USEC = 60_000_000


@dataclass(frozen=True, slots=True)
class Window:
    """The span of time a picture shows, in microseconds since the epoch."""

    start_usec: int
    end_usec: int

    @property
    def span_usec(self) -> int:
        return max(self.end_usec - self.start_usec, 1)

    def fraction(self, usec: int) -> float:
        """Where ``usec`` falls across the window: 0 at its start, 1 at its end."""
        return min(max((usec - self.start_usec) / self.span_usec, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Bar:
    """One run as the picture draws it: its time within the window and how it went."""

    run: RecordedRun
    start_usec: int  # clipped to the window
    end_usec: int  # clipped to the window; the time now for a run still running
    kind: str  # ok, fail, running, skipped: the CSS class and the terminal's character
    clipped: bool  # it began before the window
    overlapped: bool  # another run of the same unit ran at the same time


@dataclass(frozen=True, slots=True)
class Row:
    """The runs of one unit on one host, oldest first."""

    host: str
    unit: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two runs on one host that ran at the same time, and for how long together."""

    first: RecordedRun
    second: RecordedRun
    start_usec: int
    end_usec: int

    @property
    def same_unit(self) -> bool:
        return self.first.unit == self.second.unit


@dataclass(frozen=True, slots=True)
class Tick:
    """A round local time on the axis."""

    usec: int
    label: str  # 14:00, or the weekday at midnight


@dataclass(frozen=True, slots=True)
class Picture:
    window: Window
    rows: tuple[Row, ...]
    overlaps: tuple[Overlap, ...]


def overlapping_pairs(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The index pairs (i < j) of intervals ``[start, end)`` that share some time.

    An interval of no length (a start systemd refused, a duration unknown) overlaps nothing.
    """
    order = sorted(range(len(intervals)), key=lambda i: intervals[i])
    active: list[int] = []
    pairs = []
    for i in order:
        start, end = intervals[i]
        if end <= start:
            continue
        active = [j for j in active if intervals[j][1] > start]
        pairs += [(min(i, j), max(i, j)) for j in active]
        active.append(i)
    return sorted(pairs)


def run_interval(run: RecordedRun, now_usec: int) -> tuple[int, int]:
    """When a run ran: a run still running runs until now; one without a start took no time."""
    end = now_usec if run.finished_usec is None else run.finished_usec
    start = end if run.started_usec is None else run.started_usec
    return start, max(start, end)


def run_kind(run: RecordedRun) -> str:
    if run.running:
        return "running"
    if run.skipped:
        return "skipped"
    return "fail" if run.failed else "ok"


def lay_out(runs: Sequence[RecordedRun], window: Window, now_usec: int) -> Picture:
    """The picture of ``runs`` in ``window``: a row per host and unit, the rows in the order
    of their first run, and every pair of runs on one host that overlapped."""
    shown = [run for run in runs if _falls_in(run_interval(run, now_usec), window)]
    intervals = [run_interval(run, now_usec) for run in shown]
    overlaps = [
        Overlap(shown[i], shown[j], max(intervals[i][0], intervals[j][0]),
                min(intervals[i][1], intervals[j][1]))
        for i, j in overlapping_pairs(intervals)
        if shown[i].host == shown[j].host
    ]  # fmt: skip
    overlapped = {run.id for o in overlaps if o.same_unit for run in (o.first, o.second)}
    by_row: dict[tuple[str, str], list[tuple[tuple[int, int], RecordedRun]]] = {}
    for interval, run in sorted(zip(intervals, shown, strict=True), key=lambda p: (p[0], p[1].id)):
        by_row.setdefault((run.host, run.unit), []).append((interval, run))
    rows = [
        Row(host, unit, tuple(_bar(run, interval, window, run.id in overlapped)
                              for interval, run in placed))
        for (host, unit), placed in by_row.items()
    ]  # fmt: skip
    rows.sort(key=lambda row: (_first_start(row), row.unit, row.host))
    overlaps.sort(key=lambda o: (o.start_usec, o.first.id, o.second.id))
    return Picture(window, tuple(rows), tuple(overlaps))


def _falls_in(interval: tuple[int, int], window: Window) -> bool:
    start, end = interval
    return start <= window.end_usec and (end > window.start_usec or start >= window.start_usec)


def _first_start(row: Row) -> int:
    first = row.bars[0]
    return first.start_usec if first.run.started_usec is None else first.run.started_usec


def _bar(run: RecordedRun, interval: tuple[int, int], window: Window, overlapped: bool) -> Bar:
    start, end = interval
    return Bar(
        run=run,
        start_usec=max(start, window.start_usec),
        end_usec=min(max(end, window.start_usec), window.end_usec),
        kind=run_kind(run),
        clipped=start < window.start_usec,
        overlapped=overlapped,
    )


def ticks(window: Window, spacing_usec: float) -> list[Tick]:
    """Round local times across the window, at least ``spacing_usec`` apart (hourly where
    that fits): where the axis is labelled."""
    step = next((m for m in _TICK_MINUTES if m * _MINUTE_USEC >= spacing_usec), None)
    if step is None:
        return []
    return [Tick(usec, _tick_label(moment, step)) for usec, moment in _round_times(window, step)]


def _tick_label(moment: datetime, step_minutes: int) -> str:
    """The time of day; at midnight the weekday, or the date where ticks are days apart."""
    if step_minutes >= _DAY_MINUTES:
        return moment.strftime("%m-%d")
    return moment.strftime("%a") if moment.hour == moment.minute == 0 else moment.strftime("%H:%M")


def _round_times(window: Window, step_minutes: int) -> Iterator[tuple[int, datetime]]:
    """Local times in the window whose minute of the day is a multiple of ``step_minutes``."""
    moment = local_time(window.start_usec).replace(second=0, microsecond=0)
    minute_of_day = moment.hour * 60 + moment.minute
    moment += timedelta(minutes=-minute_of_day % min(step_minutes, _DAY_MINUTES))
    if _usec(moment) < window.start_usec:
        moment += timedelta(minutes=step_minutes)
    while (usec := _usec(moment)) <= window.end_usec:
        yield usec, moment
        # Back to local time at each step: the offset changes where summer time begins.
        moment = (moment + timedelta(minutes=step_minutes)).astimezone()


def _usec(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond
