"""The daily digest (pure, no I/O): when it is due, and what it says.

Once a day at ``digest_at`` (local time), the daemon sends the global channels the runs,
failures and findings of the last 24 hours per unit, the open problems, the slowest and
the most changed jobs. The day it was last sent is kept in the database, so a restart does
not send it twice; ``digest_facts.read`` gathers what it says from the store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TypedDict

from observer.spans import human_duration

DAY_USEC = 86_400 * 1_000_000
# The slowest and the most changed jobs listed.
TOP = 5


def due_day(at: time, last_sent: date | None, now: datetime) -> date | None:
    """The day whose digest is due at ``now`` (local time), if one is.

    Due from ``at`` until the day ends, once: a daemon that was down at ``at`` sends it when
    it starts, later that day; a day it was down from ``at`` to midnight gets none.
    """
    today = now.date()
    if now.time() < at or (last_sent is not None and last_sent >= today):
        return None
    return today


@dataclass(frozen=True, slots=True)
class UnitDay:
    """One unit's finished runs of the digest's 24 hours."""

    unit: str
    runs: int
    failures: int
    findings: int  # runs with findings
    longest_seconds: float | None


@dataclass(frozen=True, slots=True)
class DigestFacts:
    """What the digest of the 24 hours up to ``until_usec`` says."""

    host: str
    until_usec: int
    units: Sequence[UnitDay]
    problems: Mapping[str, Sequence[str]]  # unit -> its open problems
    trends: Mapping[str, float]  # unit -> 7-day median duration over the 30 days before


class UnitDayJson(TypedDict):
    unit: str
    runs: int
    failures: int
    findings: int
    longest_seconds: float | None


class DigestJson(TypedDict):
    host: str
    title: str
    units: list[UnitDayJson]
    open_problems: dict[str, list[str]]
    slowest: list[UnitDayJson]
    most_changed: dict[str, float]


def title(facts: DigestFacts) -> str:
    runs = sum(u.runs for u in facts.units)
    failures = sum(u.failures for u in facts.units)
    findings = sum(u.findings for u in facts.units)
    return (
        f"daily digest: {runs} run{_s(runs)}, {failures} failed, {findings} with findings, "
        f"{len(facts.problems)} unit{_s(len(facts.problems))} with open problems"
    )


def slowest(facts: DigestFacts) -> list[UnitDay]:
    timed = [u for u in facts.units if u.longest_seconds is not None]
    return sorted(timed, key=lambda u: (-(u.longest_seconds or 0), u.unit))[:TOP]


def most_changed(facts: DigestFacts) -> list[tuple[str, float]]:
    """The units whose duration trend moved most, either way (a ratio of 2 or 0.5)."""
    moved = [(unit, ratio) for unit, ratio in facts.trends.items() if ratio > 0]
    moved.sort(key=lambda item: (-abs(math.log(item[1])), item[0]))
    return [(unit, ratio) for unit, ratio in moved if ratio != 1][:TOP]


def body(facts: DigestFacts, until: str) -> str:
    """The digest as people read it; ``until`` is the end of its 24 hours, as text."""
    lines = [f"observer on {facts.host}: the 24 hours to {until}.", ""]
    busy = [u for u in facts.units if u.runs]
    if busy:
        width = max(len("UNIT"), *(len(u.unit) for u in busy))
        lines.append(f"{'UNIT':<{width}}  RUNS  FAILED  FINDINGS")
        lines += [f"{u.unit:<{width}}  {u.runs:>4}  {u.failures:>6}  {u.findings:>8}" for u in busy]
    else:
        lines.append("No run finished.")
    lines += ["", "Open problems:"]
    lines += [f"  {unit}: {', '.join(kinds)}" for unit, kinds in sorted(facts.problems.items())]
    if not facts.problems:
        lines.append("  none")
    lines += ["", "Slowest (the longest run of each):"]
    lines += _listed([(u.unit, human_duration(u.longest_seconds)) for u in slowest(facts)])
    lines += ["", "Most changed (the median duration of 7 days against the 30 before):"]
    lines += _listed([(unit, _change(ratio)) for unit, ratio in most_changed(facts)])
    return "\n".join(lines)


def _listed(rows: Sequence[tuple[str, str]]) -> list[str]:
    if not rows:
        return ["  none"]
    width = max(len(unit) for unit, _ in rows)
    return [f"  {unit:<{width}}  {value}" for unit, value in rows]


def to_json(facts: DigestFacts) -> DigestJson:
    def unit_json(u: UnitDay) -> UnitDayJson:
        return {
            "unit": u.unit,
            "runs": u.runs,
            "failures": u.failures,
            "findings": u.findings,
            "longest_seconds": u.longest_seconds,
        }

    return {
        "host": facts.host,
        "title": title(facts),
        "units": [unit_json(u) for u in facts.units if u.runs],
        "open_problems": {unit: list(kinds) for unit, kinds in sorted(facts.problems.items())},
        "slowest": [unit_json(u) for u in slowest(facts)],
        "most_changed": {unit: round(ratio, 3) for unit, ratio in most_changed(facts)},
    }


def window(until_usec: int) -> tuple[int, int]:
    """The digest's 24 hours, as (since, until) in microseconds."""
    return until_usec - DAY_USEC, until_usec


def _change(ratio: float) -> str:
    if ratio >= 1:
        return f"{ratio:.2f} times slower"
    return f"{1 / ratio:.2f} times faster"


def _s(n: int) -> str:
    return "" if n == 1 else "s"
