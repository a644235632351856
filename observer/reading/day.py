"""A picture of the day: where each run falls in a window of time and which runs overlap.

Pure: runs, a window and the time now in; rows of bars, the overlaps found and the hour
ticks out, as plain numbers. The terminal (``timeline``) and the dashboard's SVG day view
draw the same picture; ``upcoming`` finds the expected overlaps with the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from observer.model import Source
from observer.reading.history import RecordedRun
from observer.reading.render import local_time

# Spacings of the axis' ticks, in minutes: each divides a day (so that ticks fall on round
# times), or is whole days (ticks at midnights).
_TICK_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440, 2880, 10080, 20160)
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
    """Runs on one host that ran at the same time: each overlaps another of them, from when
    the first two ran together until the last two stopped (a chain of runs is one overlap)."""

    runs: tuple[RecordedRun, ...]  # in the order they started
    start_usec: int
    end_usec: int
    most_at_once: int


@dataclass(frozen=True, slots=True)
class Together:
    """Of some intervals, those that overlap one another (by index), and when and how many."""

    members: tuple[int, ...]
    start_usec: int
    end_usec: int
    most_at_once: int


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


def together(intervals: Sequence[tuple[int, int]]) -> list[Together]:
    """The groups of intervals that overlap, in the order of time: a group holds each
    interval that shares time with another of it. Linear after sorting, however many
    intervals overlap (where pairs would grow as their square)."""
    order = sorted((i for i, (a, b) in enumerate(intervals) if b > a), key=lambda i: intervals[i])
    groups: list[Together] = []
    members: list[int] = []
    reach = 0
    for i in order:
        start, end = intervals[i]
        if members and start >= reach:
            if len(members) > 1:
                groups.append(_together(members, intervals))
            members = []
        members.append(i)
        reach = max(reach, end) if len(members) > 1 else end
    if len(members) > 1:
        groups.append(_together(members, intervals))
    return groups


def _together(members: list[int], intervals: Sequence[tuple[int, int]]) -> Together:
    """When two or more of ``members`` ran at once, and the most at once."""
    # An end sorts before a start at the same time: runs that touch do not overlap.
    events = sorted(
        [(intervals[i][0], 1) for i in members] + [(intervals[i][1], -1) for i in members]
    )
    active, most, start, end = 0, 0, None, 0
    for usec, step in events:
        if step > 0 and active == 1 and start is None:
            start = usec
        if step < 0 and active == 2:
            end = usec
        active += step
        most = max(most, active)
    return Together(tuple(members), start or 0, end, most)


def job_test(timer_services: Collection[str]) -> Callable[[RecordedRun], bool]:
    """Which runs are of jobs, whose overlaps matter: started by a timer or a path unit,
    recorded by `observer run`, or of a service a timer starts. A long-running service
    (sshd, dbus) runs beside every job: counted, it would make them all one overlap."""

    def is_job(run: RecordedRun) -> bool:
        return (
            run.unit in timer_services
            or run.source == Source.WRAPPER
            or (run.trigger or "").endswith((".timer", ".path"))
        )

    return is_job


def run_kind(run: RecordedRun) -> str:
    if run.running:
        return "running"
    if run.skipped:
        return "skipped"
    return "fail" if run.failed else "ok"


def lay_out(
    runs: Sequence[RecordedRun],
    window: Window,
    now_usec: int,
    is_job: Callable[[RecordedRun], bool] = lambda _: True,
) -> Picture:
    """The picture of ``runs`` in ``window``: a row per host and unit, the rows in the order
    of their first run, and the runs on one host that overlapped, of those ``is_job``."""
    placed = sorted(
        ((run_interval(run, now_usec), run) for run in runs),
        key=lambda p: (p[0], p[1].id),
    )
    placed = [(interval, run) for interval, run in placed if _falls_in(interval, window)]
    by_row: dict[tuple[str, str], list[tuple[tuple[int, int], RecordedRun]]] = {}
    by_host: dict[str, list[tuple[tuple[int, int], RecordedRun]]] = {}
    for interval, run in placed:
        by_row.setdefault((run.host, run.unit), []).append((interval, run))
        if is_job(run):
            by_host.setdefault(run.host, []).append((interval, run))
    rows = [_row(host, unit, row, window) for (host, unit), row in by_row.items()]
    rows.sort(key=lambda row: (_first_start(row), row.unit, row.host))
    overlaps = [overlap for on_host in by_host.values() for overlap in _overlaps(on_host)]
    overlaps.sort(key=lambda o: (o.start_usec, o.runs[0].id))
    return Picture(window, tuple(rows), tuple(overlaps))


def _row(
    host: str, unit: str, placed: list[tuple[tuple[int, int], RecordedRun]], window: Window
) -> Row:
    """A unit's bars; those of its runs that ran at the same time as another are marked."""
    pairs = overlapping_pairs([interval for interval, _ in placed])
    overlapped = {i for pair in pairs for i in pair}
    bars = [
        _bar(run, interval, window, i in overlapped) for i, (interval, run) in enumerate(placed)
    ]
    return Row(host, unit, tuple(bars))


def _overlaps(placed: list[tuple[tuple[int, int], RecordedRun]]) -> list[Overlap]:
    return [
        Overlap(tuple(placed[i][1] for i in group.members), group.start_usec, group.end_usec,
                group.most_at_once)
        for group in together([interval for interval, _ in placed])
    ]  # fmt: skip


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
