"""``observer next``: what the timers start next, how long each usually runs, and which of
those runs are expected to overlap. Pure: the schedule in, rows and JSON out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from observer.reading import day
from observer.reading.render import cell, iso_time, table, table_time
from observer.spans import human_duration


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A timer's next start of its service, and how long the service usually runs."""

    timer: str
    unit: str
    host: str
    next_usec: int
    p50_seconds: float | None  # the median duration of its finished runs; None without any

    @property
    def expected_end_usec(self) -> int:
        """When the run should end: its start plus its usual duration (unknown: no time)."""
        return self.next_usec + round((self.p50_seconds or 0.0) * 1e6)


class ScheduledJson(TypedDict):
    timer: str
    unit: str
    host: str
    next_at: str | None
    usual_seconds: float | None
    expected_end_at: str | None
    overlaps: list[str]  # the other units expected to run at the same time


def expected_overlaps(schedule: Sequence[Scheduled]) -> dict[int, list[Scheduled]]:
    """By index in ``schedule``: the starts of other units whose expected runs
    [next, next + p50] share time with its own (the rule of the timeline's overlaps)."""
    intervals = [(s.next_usec, s.expected_end_usec) for s in schedule]
    found: dict[int, list[Scheduled]] = {i: [] for i in range(len(schedule))}
    for i, j in day.overlapping_pairs(intervals):
        if schedule[i].unit != schedule[j].unit:  # systemd does not start a running unit again
            found[i].append(schedule[j])
            found[j].append(schedule[i])
    return found


def next_table(schedule: Sequence[Scheduled], now_usec: int) -> str:
    """One line per timer, soonest first: when, in how long, the unit, its usual duration,
    and the units expected to run at the same time."""
    overlaps = expected_overlaps(schedule)
    rows = [
        [
            table_time(s.next_usec), _left(s.next_usec - now_usec), cell(s.unit), cell(s.timer),
            human_duration(s.p50_seconds),
            cell(", ".join(o.unit for o in overlaps[i])) or "-",
        ]
        for i, s in enumerate(schedule)
    ]  # fmt: skip
    headers = ["NEXT", "LEFT", "UNIT", "TIMER", "USUAL", "OVERLAPS"]
    return table(headers, rows, right={1, 4}, empty="no timer is scheduled")


def _left(usec: int) -> str:
    return "now" if usec <= 0 else human_duration(usec / 1e6)


def next_json(schedule: Sequence[Scheduled]) -> list[ScheduledJson]:
    overlaps = expected_overlaps(schedule)
    return [
        {
            "timer": s.timer,
            "unit": s.unit,
            "host": s.host,
            "next_at": iso_time(s.next_usec),
            "usual_seconds": s.p50_seconds,
            "expected_end_at": iso_time(s.expected_end_usec),
            "overlaps": [o.unit for o in overlaps[i]],
        }
        for i, s in enumerate(schedule)
    ]
