"""A real headless Chromium, run once per page: the DOM it built, its console, a screenshot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pages import Element, parse

# Quiet and self-contained: no network of its own, nothing from the user's profile.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# With --enable-logging=stderr, each console message (console.log and .error, a blocked
# script, a resource that failed to load) is a line like
#   [pid:tid:date:INFO:CONSOLE:1] "message", source: file:///page.html (1)
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")
TIMEOUT = 120


def chromium_or_skip() -> str:
    """The browser's path; skip without it, except on CI, where it must be installed."""
    if path := shutil.which("chromium"):
        return path
    reason = "chromium is not installed (packaging/dev-setup.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class Loaded:
    """A page as the browser left it after loading: its DOM and what it logged."""

    dom: Element
    console: list[str]


class Browser:
    def __init__(self, executable: str) -> None:
        self.executable = executable

    def _run(self, page: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
        url = page.as_uri() if isinstance(page, Path) else page
        with tempfile.TemporaryDirectory(prefix="observer-chromium-") as profile:
            return subprocess.run(
                [self.executable, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=TIMEOUT,
                check=True,
                stdin=subprocess.DEVNULL,
            )

    def load(self, page: Path | str) -> Loaded:
        """Load ``page`` from disk (or a URL); return the DOM after load and every console
        message."""
        result = self._run(page, "--enable-logging=stderr", "--v=0", "--dump-dom")
        assert result.stdout.lstrip().lower().startswith("<!doctype html>"), result.stderr
        return Loaded(parse(result.stdout), _CONSOLE.findall(result.stderr))

    def screenshot(self, page: Path | str, png: Path, width: int = 1280, height: int = 800) -> Path:
        png.parent.mkdir(parents=True, exist_ok=True)
        self._run(page, f"--screenshot={png}", f"--window-size={width},{height}",
                  "--hide-scrollbars")  # fmt: skip
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
        return png
