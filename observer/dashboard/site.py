"""The dashboard's directory: the manifest, what is there, stale pages removed.

Pages themselves are written by ``writer`` (atomically; a long run of them in a process of
its own).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from observer.dashboard.writer import TEMP_PREFIX, TEMP_SUFFIX, DashboardError, write_atomically

__all__ = [
    "MANIFEST", "POLICY", "STYLESHEET", "DashboardError", "DayDrawing", "Listing", "Manifest",
    "PageSet", "UnitEntry", "is_page", "list_directory", "manifest_json", "read_manifest",
    "remove_stale", "write_atomically",
]  # fmt: skip

MANIFEST = ".observer-dashboard.json"
STYLESHEET = "style.css"  # written beside the pages, linked by each
# What each page allows itself (its <meta> tag, and the header the daemon serves it with): no
# script of any kind, whatever a page holds (escaping is the first wall, this the second);
# the one style sheet beside it ('self'; file: for a page opened from disk, whose origin a
# browser may hold to be its own alone); pictures inline only.
POLICY = "default-src 'none'; style-src 'self' file:; img-src data:"
# Bump when the manifest's shape changes: a manifest of another format is ignored.
MANIFEST_FORMAT = 3
# Only files with these names are ours to replace or remove: the directory may hold others.
_OUR_PAGE = re.compile(
    r"(?:run-\d+|unit-[A-Za-z0-9_.-]*-[0-9a-f]{12}(?:-\d+)?"
    r"|day(?:-[A-Za-z0-9_.-]*-[0-9a-f]{12})?)\.html"
)
_TEMP_NAME = re.compile(f"^{re.escape(TEMP_PREFIX)}[^\n]*{re.escape(TEMP_SUFFIX)}$", re.M)
_STALE_TEMP_SECONDS = 3600


def is_page(name: str) -> bool:
    """Whether ``name`` is one the dashboard writes its pages under (the overview's too)."""
    return name in ("index.html", "fleet.html", STYLESHEET) or _OUR_PAGE.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class PageSet:
    """A unit's pages with their fingerprints, as one string: ``name fingerprint name ...``.

    The manifest holds one per unit; kept as text, it costs next to nothing to read and
    write back for the many units a generation does not touch.
    """

    text: str

    @classmethod
    def of(cls, fingerprints: dict[str, str]) -> PageSet:
        """From fingerprints by page name ("" for a page without one)."""
        return cls(" ".join(f"{name} {value or '-'}" for name, value in fingerprints.items()))

    def names(self) -> list[str]:
        return self.text.split(" ")[::2] if self.text else []

    def fingerprints(self) -> dict[str, str]:
        words = self.text.split(" ") if self.text else []
        return dict(zip(words[::2], words[1::2], strict=True))


@dataclass(slots=True)
class UnitEntry:
    """What a generation wrote of one unit, as the manifest keeps it for the next one."""

    key: tuple[int, int | None]  # the unit's version (store.note_changed) and its next run
    hosts: tuple[str, ...]  # where its runs were recorded
    health: str
    consecutive_failures: int
    running: bool
    row: str  # its row of the overview, as HTML
    pages: PageSet | None  # None: not written (not on the overview)


@dataclass(frozen=True, slots=True)
class DayDrawing:
    """When the day pages were last drawn, what that cost (CPU seconds), and which they are."""

    at_usec: int
    cost: float
    pages: tuple[tuple[str, str], ...]  # (host, file name)


@dataclass(slots=True)
class Manifest:
    """The manifest of a directory: for the setting the pages were written in, each unit,
    and the day pages."""

    setting: str
    hosts: tuple[str, ...]
    units: dict[str, UnitEntry]
    days: DayDrawing | None = None


def read_manifest(directory: Path, setting: str) -> Manifest | None:
    """The manifest, if it is of this format and setting; None when missing or unusable."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT or data.get("setting") != setting:
            return None
        units = {str(name): _entry(value) for name, value in data["units"].items()}
        days = None
        if (drawn := data["days"]) is not None:
            pages = tuple((str(host), str(name)) for host, name in drawn["pages"])
            days = DayDrawing(int(drawn["at"]), float(drawn["cost"]), pages)
        return Manifest(setting, tuple(str(h) for h in data["hosts"]), units, days)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _entry(value: Any) -> UnitEntry:
    version, next_run = value["key"]
    health, failures, running = value["state"]
    row, pages = value["row"], value["pages"]
    if not (
        isinstance(version, int)
        and isinstance(next_run, int | None)
        and isinstance(health, str)
        and isinstance(failures, int)
        and isinstance(row, str)
        and isinstance(pages, str | None)
    ):
        raise ValueError("not a unit of the manifest")
    hosts = tuple(str(h) for h in value["hosts"])
    page_set = None if pages is None else PageSet(pages)
    return UnitEntry((version, next_run), hosts, health, failures, bool(running), row, page_set)


def manifest_json(manifest: Manifest) -> bytes:
    """The manifest as the file holds it."""
    units = {
        name: {
            "key": entry.key,
            "hosts": entry.hosts,
            "state": (entry.health, entry.consecutive_failures, entry.running),
            "row": entry.row,
            "pages": None if entry.pages is None else entry.pages.text,
        }
        for name, entry in manifest.units.items()
    }
    data = {
        "format": MANIFEST_FORMAT,
        "setting": manifest.setting,
        "hosts": manifest.hosts,
        "units": units,
        "days": None
        if (days := manifest.days) is None
        else {"at": days.at_usec, "cost": days.cost, "pages": days.pages},
    }
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Listing:
    """What the directory held when a generation began."""

    names: frozenset[str]  # every name in it (our pages among them)
    old_temps: tuple[str, ...]  # left by a generation that was killed


def list_directory(directory: Path) -> Listing:
    """The names in ``directory``, and our temporary files older than an hour (one listing)."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise DashboardError(f"cannot list {str(directory)!r}: {e.strerror}") from e
    temps = []
    horizon = time.time() - _STALE_TEMP_SECONDS
    for name in _TEMP_NAME.findall("\n".join(names)):  # one pass in C over many names
        with contextlib.suppress(FileNotFoundError):
            if os.stat(directory / name).st_mtime < horizon:
                temps.append(name)
    # Only names like our pages are ours; that test is left for the few that go (below).
    return Listing(frozenset(names), tuple(temps))


def remove_stale(directory: Path, listing: Listing, current: set[str]) -> int:
    """Remove our pages that no longer belong (pruned runs, older pages), and old temp files."""
    removed = 0
    stale = sorted(name for name in listing.names - current if _OUR_PAGE.fullmatch(name))
    for name in stale:
        if _unlink(directory / name):
            removed += 1
    for name in listing.old_temps:
        _unlink(directory / name)
    return removed


def _unlink(path: Path) -> bool:
    """Remove ``path``; False when it was gone already."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise DashboardError(f"cannot remove {str(path)!r}: {e.strerror}") from e
    return True
