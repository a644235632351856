"""The dashboard's pages as files: templates, atomic writes, the manifest, stale pages removed."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
import time
from pathlib import Path

import jinja2
import markupsafe

from observer.model import ObserverError

MANIFEST = ".observer-dashboard.json"
_TEMP_PREFIX = ".observer-"
_TEMP_SUFFIX = ".tmp"
# Only files with these names are ours to replace or remove: the directory may hold others.
_OUR_PAGE = re.compile(r"(?:run-\d+|unit-[A-Za-z0-9_.-]*-[0-9a-f]{12}(?:-\d+)?)\.html")
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


def read_manifest(directory: Path, page_format: int) -> dict[str, str]:
    """Fingerprints of the run pages already written; empty when unknown or of another format."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != page_format:
        return {}
    pages = data.get("pages")
    if not isinstance(pages, dict):
        return {}
    return {str(k): str(v) for k, v in pages.items()}


def remove_stale(directory: Path, current: set[str]) -> int:
    """Remove our pages that no longer belong (pruned runs, older pages), and old temp files."""
    removed = 0
    horizon = time.time() - _STALE_TEMP_SECONDS
    try:
        entries = list(os.scandir(directory))
    except OSError as e:
        raise DashboardError(f"cannot list {str(directory)!r}: {e.strerror}") from e
    for entry in entries:
        try:
            if _OUR_PAGE.fullmatch(entry.name) and entry.name not in current:
                os.unlink(entry.path)
                removed += 1
            elif (
                entry.name.startswith(_TEMP_PREFIX)
                and entry.name.endswith(_TEMP_SUFFIX)
                and entry.stat().st_mtime < horizon
            ):
                os.unlink(entry.path)  # left by a generation that was killed
        except FileNotFoundError:
            continue
        except OSError as e:
            raise DashboardError(f"cannot remove {entry.path!r}: {e.strerror}") from e
    return removed
