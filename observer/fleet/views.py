"""How each unit stands across the fleet: on how many hosts it ran, failed, is failing now,
and was expected but did not run (silent). Pure: facts in, verdicts out (docs/fleet.md).

A unit is **silent** on a host when its newest start there is older than ``grace`` times its
usual interval on that host (the median gap between its recent starts there), and later
than that by at least ``MIN_LATE_USEC``. A unit that started fewer than ``MIN_STARTS``
times on a host has no usual interval there and is never silent on it. A host that stopped
sending is found by the same rule: none of its units starts when due. Where its timer's
schedule is known (a server's own database: the daemon sees its timers on the bus), a unit
is silent too once its timer was due ``MIN_LATE_USEC`` ago and it has not started since.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

# How many of a unit's newest starts on a host its usual interval is taken from.
RECENT_STARTS = 20
MIN_STARTS = 3  # two gaps: one gap is no habit
GRACE = 2.0
MIN_LATE_USEC = 60 * 1_000_000


class Standing(StrEnum):
    """Where a unit stands on one host."""

    OK = "ok"
    FAILING = "failing"  # its newest finished run there failed
    SILENT = "silent"  # it did not start when its habit says it should have


@dataclass(frozen=True, slots=True)
class HostUnit:
    """What the store says of one unit on one host (from its kept summary)."""

    host: str
    unit: str
    runs: int
    failures: int
    consecutive_failures: int
    running: bool
    starts_usec: tuple[int, ...]  # its newest starts there, newest first
    timer_due_usec: int | None = None  # when its timer was next due, where known


@dataclass(frozen=True, slots=True)
class UnitAcrossHosts:
    """One unit over every host with runs of it, each host in one of three lists."""

    unit: str
    ok: tuple[str, ...]
    failing: tuple[str, ...]
    silent: tuple[str, ...]
    runs: int
    failures: int

    @property
    def hosts(self) -> int:
        return len(self.ok) + len(self.failing) + len(self.silent)


@dataclass(frozen=True, slots=True)
class HostSeen:
    """One host: when it last started a run of any unit, and how many units it runs."""

    host: str
    last_run_usec: int | None
    units: int


def usual_interval_usec(starts_usec: Sequence[int]) -> int | None:
    """The median gap between starts (newest first); None with fewer than MIN_STARTS."""
    if len(starts_usec) < MIN_STARTS:
        return None
    gaps = [newer - older for newer, older in itertools.pairwise(starts_usec)]
    return int(statistics.median(gaps))


def standing(cell: HostUnit, now_usec: int, grace: float = GRACE) -> Standing:
    """Silent (it is overdue by its habit), else failing (its newest run failed), else ok."""
    interval = usual_interval_usec(cell.starts_usec)
    due = cell.timer_due_usec
    newest = cell.starts_usec[0] if cell.starts_usec else None
    if (
        due is not None
        and now_usec > due + MIN_LATE_USEC
        and not cell.running
        and (newest is None or newest < due)
    ):
        return Standing.SILENT
    if interval is not None and not cell.running:
        due = cell.starts_usec[0] + max(int(interval * grace), interval + MIN_LATE_USEC)
        if now_usec > due:
            return Standing.SILENT
    return Standing.FAILING if cell.consecutive_failures else Standing.OK


def across_hosts(
    cells: Iterable[HostUnit], now_usec: int, grace: float = GRACE
) -> list[UnitAcrossHosts]:
    """Each unit's hosts by standing, in unit then host order."""
    by_unit: dict[str, list[HostUnit]] = {}
    for cell in sorted(cells, key=lambda c: (c.unit, c.host)):
        by_unit.setdefault(cell.unit, []).append(cell)
    views = []
    for unit, unit_cells in by_unit.items():
        placed: dict[Standing, list[str]] = {s: [] for s in Standing}
        for cell in unit_cells:
            placed[standing(cell, now_usec, grace)].append(cell.host)
        views.append(
            UnitAcrossHosts(
                unit=unit,
                ok=tuple(placed[Standing.OK]),
                failing=tuple(placed[Standing.FAILING]),
                silent=tuple(placed[Standing.SILENT]),
                runs=sum(c.runs for c in unit_cells),
                failures=sum(c.failures for c in unit_cells),
            )
        )
    return views


def hosts_seen(cells: Iterable[HostUnit]) -> list[HostSeen]:
    """Each host with runs, in name order."""
    last: dict[str, int | None] = {}
    units: dict[str, int] = {}
    for cell in cells:
        newest = cell.starts_usec[0] if cell.starts_usec else None
        known = last.get(cell.host)
        last[cell.host] = newest if known is None else max(known, newest or known)
        units[cell.host] = units.get(cell.host, 0) + 1
    return [HostSeen(host, last[host], units[host]) for host in sorted(last)]


def line(view: UnitAcrossHosts) -> str:
    """``backup.service: 47 of 50 hosts ok, 2 failing (web3, web7), 1 silent (db2)``."""
    parts = [f"{len(view.ok)} of {view.hosts} host{'s' if view.hosts != 1 else ''} ok"]
    for word, hosts in (("failing", view.failing), ("silent", view.silent)):
        if hosts:
            parts.append(f"{len(hosts)} {word} ({', '.join(hosts)})")
    return f"{view.unit}: {', '.join(parts)}"
