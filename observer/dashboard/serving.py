"""The kept pages over HTTP, read-only (`[dashboard] serve`, on the metrics listener).

Only names the dashboard writes are served (``index.html``, ``unit-*.html``, ``run-N.html``,
``style.css``, ...), each one path segment, opened beside the others without following a
symbolic link: no directory listing, nothing outside the pages (``..``, ``%2e%2e``, absolute
paths, NUL and links all end in 404). Pages are answered with the same
Content-Security-Policy as their ``<meta>`` tag and with an ETag and Last-Modified to be
asked again with (``no-cache``: a browser shows a page again only after the daemon says it
is unchanged, 304).
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from observer.dashboard.site import POLICY, STYLESHEET, is_page

# As each page says it in its <meta> tag.
CONTENT_SECURITY_POLICY = POLICY
_COMMON = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_HTML, _CSS = "text/html; charset=utf-8", "text/css; charset=utf-8"
_MAX_PAGE = 64 * 1024 * 1024  # far above the largest page written (the overview's ~1 KiB a unit)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Pages:
    """Answers requests for the pages kept in ``directory`` (written by the dashboard service)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def respond(self, target: str, headers: Mapping[str, str]) -> Response:
        """The answer to a GET of ``target`` (the request's path, still %-encoded), with the
        request's ``headers`` (names in lower case)."""
        name = page_name(target)
        if name is None:
            return _text(404, "not found: observer serves / (its dashboard) and /metrics\n")
        try:
            status, body = _read(self.directory, name)
        except FileNotFoundError:
            if name == "index.html":
                return _text(503, "observer has not written its dashboard yet: try again soon\n")
            return _text(404, "not found: no such page (the run may have been deleted)\n")
        except OSError:  # a link, a directory, a file it may not read: not a page to show
            return _text(404, "not found\n")
        tag = f'"{status.st_ino:x}-{status.st_mtime_ns:x}-{status.st_size:x}"'
        page_headers = (
            ("Content-Type", _CSS if name == STYLESHEET else _HTML),
            ("Cache-Control", "no-cache"),
            ("ETag", tag),
            ("Last-Modified", email.utils.formatdate(status.st_mtime, usegmt=True)),
            *_COMMON,
        )
        if _unchanged(headers, tag, status.st_mtime):
            return Response(304, page_headers[1:], b"")
        return Response(200, page_headers, body)


def page_name(target: str) -> str | None:
    """The page a request's path names (``/`` is the overview); None for anything else."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not decoded.startswith("/"):
        return None
    name = decoded[1:] or "index.html"
    return name if is_page(name) else None


def _read(directory: Path, name: str) -> tuple[os.stat_result, bytes]:
    """The page's file status and bytes; a name that is a link or not a file raises OSError."""
    folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(fd, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_size > _MAX_PAGE:
            raise IsADirectoryError(name)
        return status, file.read(_MAX_PAGE)


def _unchanged(headers: Mapping[str, str], tag: str, mtime: float) -> bool:
    if (match := headers.get("if-none-match")) is not None:
        return tag in {t.strip() for t in match.split(",")} or match.strip() == "*"
    if (since := headers.get("if-modified-since")) is not None:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            return int(mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
    return False


def _text(status: int, message: str) -> Response:
    headers = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))
    return Response(status, headers + _COMMON, message.encode())
