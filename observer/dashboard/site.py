"""The dashboard's pages as files: templates, atomic writes, the manifest, stale pages removed."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from observer.model import ObserverError

MANIFEST = ".observer-dashboard.json"
# Bump when the manifest's shape changes: a manifest of another format is ignored.
MANIFEST_FORMAT = 2
_TEMP_PREFIX = ".observer-"
_TEMP_SUFFIX = ".tmp"
# Only files with these names are ours to replace or remove: the directory may hold others.
_OUR_PAGE = re.compile(r"(?:run-\d+|unit-[A-Za-z0-9_.-]*-[0-9a-f]{12}(?:-\d+)?)\.html")
_TEMP_NAME = re.compile(f"^{re.escape(_TEMP_PREFIX)}[^\n]*{re.escape(_TEMP_SUFFIX)}$", re.M)
_STALE_TEMP_SECONDS = 3600


class DashboardError(ObserverError):
    """The dashboard's directory cannot be created or written."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file beside ``path``, then rename it over ``path``."""
    try:
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise DashboardError(f"cannot write in {str(path.parent)!r}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as file:
            # Pages hold job output, which can hold secrets: as readable as the database.
            os.fchmod(file.fileno(), 0o640)
            file.write(data)
        os.replace(temp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise DashboardError(f"cannot write {str(path)!r}: {e.strerror}") from e


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("observer.dashboard", "templates"),
        autoescape=True,  # every value, unit names and job output above all, is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates do not change while observer runs: no stat per page
    )
    # Our own constant style sheet, the one value not escaped (entities mean nothing in CSS).
    css, _, _ = environment.loader.get_source(environment, "style.css")  # type: ignore[union-attr]
    environment.globals["css"] = markupsafe.Markup(minify_css(css))
    return environment


def minify_css(css: str) -> str:
    """Drop comments and needless spaces: the style sheet is inlined into every page."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"\s+", " ", css)
    return re.sub(r"\s*([{}:;,>])\s*", r"\1", css).replace(";}", "}").strip()


def template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


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


@dataclass(slots=True)
class Manifest:
    """The manifest of a directory: for the setting the pages were written in, each unit."""

    setting: str
    hosts: tuple[str, ...]
    units: dict[str, UnitEntry]


def read_manifest(directory: Path, setting: str) -> Manifest | None:
    """The manifest, if it is of this format and setting; None when missing or unusable."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT or data.get("setting") != setting:
            return None
        units = {str(name): _entry(value) for name, value in data["units"].items()}
        return Manifest(setting, tuple(str(h) for h in data["hosts"]), units)
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
    }
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Listing:
    """Our files in the directory when a generation began."""

    names: frozenset[str]  # every name (our pages among them)
    old_temps: tuple[str, ...]  # left by a generation that was killed


def list_directory(directory: Path) -> Listing:
    """Our pages in ``directory``, and temporary files older than an hour (one listing)."""
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
    stale = [name for name in listing.names - current if _OUR_PAGE.fullmatch(name)]
    for name in [*sorted(stale), *listing.old_temps]:
        try:
            os.unlink(directory / name)
            removed += name in listing.names
        except FileNotFoundError:
            continue
        except OSError as e:
            raise DashboardError(f"cannot remove {str(directory / name)!r}: {e.strerror}") from e
    return removed


class Writer:
    """Writes files on a thread of its own, in the order given, while the caller goes on.

    Creating a file costs the kernel about as much as rendering a page costs Python: on a
    second core both go on at once.
    """

    def __init__(self, write: Callable[[Path, bytes], None], depth: int = 256) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[Path, bytes] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="observer-dashboard-writer")
        self._thread.start()

    def put(self, path: Path, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((path, data))

    def close(self) -> None:
        """Wait until every file given is written; raise the first failure."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop at once: files given and not yet written are not written."""
        self._abandoned = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._abandoned:
                try:
                    self._write(*item)
                except BaseException as e:  # raised in the caller's thread, by put or close
                    self._error = e
