"""The daemon's side of the dashboard: rewrite the pages after runs end, debounced, each
rewrite in a child process (``python -m observer.dashboard.rewrite``).

The child holds the generation's heap, which grows with the history, and returns it whole
when it exits: the daemon itself never imports the templates nor reads a page's runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from observer.config import DashboardConfig
from observer.model import ObserverError, Run

log = logging.getLogger(__name__)

# Output can reach the journal a little after its run ended: look again this much later.
LATE_OUTPUT_SECONDS = 10.0
# After a failed write, wait this long before the next try, doubling up to the maximum.
RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
# A generation told to stop (SIGTERM) stops at its next page; one that has not by then is killed.
STOP_SECONDS = 5.0
# What the child runs (with the database and the directory as its arguments).
GENERATION = ("-m", "observer.dashboard.rewrite")
_STDERR_SHOWN = 4000  # the end of a crashed generation's stderr, in the daemon's log


@dataclass(slots=True)
class RewriteSchedule:
    """When to rewrite the pages, from when runs ended (a pure, clock-driven rule).

    A burst of runs makes one rewrite, once no run has ended for ``quiet`` seconds; a steady
    stream of runs still gets one at the latest ``max(quiet, min_interval)`` after the first;
    a rewrite never starts less than ``min_interval`` after the last one ended; and one more
    follows ``late`` seconds after the last run ended, for output that reaches the journal
    after its run's end (the daemon hears of runs ending, not of each line).
    """

    quiet: float
    min_interval: float
    late: float = 0.0
    dirty_since: float | None = None
    last_change: float = 0.0
    follow_up: float | None = None
    not_before: float = 0.0

    def stale(self, now: float) -> None:
        """The pages are out of date since ``now``."""
        if self.dirty_since is None:
            self.dirty_since = now
        self.last_change = now

    def changed(self, now: float) -> None:
        """Runs ended at ``now``: the pages are out of date, and their output may trail."""
        self.stale(now)
        if self.late > 0:
            self.follow_up = now + self.late

    def due_at(self) -> float | None:
        """When the next rewrite should start; None when the pages are up to date."""
        due = []
        if self.dirty_since is not None:
            settled = self.last_change + self.quiet
            latest = self.dirty_since + max(self.quiet, self.min_interval)
            due.append(min(settled, latest))
        if self.follow_up is not None:
            due.append(self.follow_up)
        return max(min(due), self.not_before) if due else None

    def started(self, now: float) -> None:
        """A rewrite starts at ``now``: it covers every change so far."""
        self.dirty_since = None
        if self.follow_up is not None and self.follow_up <= now:
            self.follow_up = None

    def finished(self, now: float) -> None:
        self.not_before = max(self.not_before, now + self.min_interval)

    def failed(self, now: float, retry_in: float) -> None:
        """The rewrite failed: the pages are still out of date; try again later."""
        self.stale(now)
        self.not_before = max(self.not_before, now + retry_in)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What one generation did, as its process said."""

    written: int
    unchanged: int
    removed: int
    day_pages: int
    peak_kib: int  # the generation's own peak RSS


class GenerationError(ObserverError):
    """A generation's process failed: what it said, or how it ended."""


class DashboardService:
    """Keeps the dashboard's pages in ``directory`` up to date while the daemon runs."""

    def __init__(
        self,
        directory: Path,
        db_path: Path,
        config: DashboardConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.db_path = db_path
        self.clock = clock
        self.schedule = RewriteSchedule(
            config.quiet_seconds, config.min_interval_seconds, LATE_OUTPUT_SECONDS
        )
        self.wake = asyncio.Event()
        self.stopping = threading.Event()
        self.writes = 0
        self.failures = 0

    def runs_recorded(self, runs: list[Run]) -> None:
        """A hook of the daemon's: runs ended; rewrite soon (returns at once)."""
        self.schedule.changed(self.clock())
        self.wake.set()

    async def run(self) -> None:
        """A service of the daemon's: rewrite whenever the schedule says, until cancelled."""
        self.schedule.stale(self.clock())  # show what is recorded already, from the start
        retry = RETRY_SECONDS
        try:
            while True:
                due = self.schedule.due_at()
                if due is None or due > self.clock():
                    timeout = None if due is None else due - self.clock()
                    # asyncio.timeout, not wait_for: in 3.11 wait_for can lose a cancellation.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self.wake.wait()
                    self.wake.clear()
                    continue
                self.schedule.started(self.clock())
                began = self.clock()
                try:
                    # One at a time: the loop waits here (not blocked) until the child exits.
                    report = await self._write()
                except ObserverError as e:
                    retry = self._failed(f"{e}", retry)
                    continue
                except Exception:  # a bug here must not stop the recording
                    log.exception("dashboard: could not write the pages")
                    retry = self._failed(None, retry)
                    continue
                retry = RETRY_SECONDS
                self.writes += 1
                self.schedule.finished(self.clock())
                (log.info if self.writes == 1 else log.debug)(
                    "dashboard: wrote %d pages (%d unchanged, %d removed) to %s in %.1fs "
                    "(its process peaked at %.0f MiB)",
                    report.written, report.unchanged, report.removed, self.directory,
                    self.clock() - began, report.peak_kib / 1024,
                )  # fmt: skip
        finally:
            self.stopping.set()

    def _failed(self, reason: str | None, retry: float) -> float:
        """A rewrite failed: try again in ``retry`` seconds; the wait after the next failure."""
        self.failures += 1
        if reason is not None:
            log.error("dashboard: %s (trying again in %.0fs)", reason, retry)
        self.schedule.failed(self.clock(), retry)
        return min(retry * 2, MAX_RETRY_SECONDS)

    async def _write(self) -> Rewrite:
        """Run one generation in a child process and wait for it without blocking the loop;
        cancelled, stop the child (at its next page) before returning."""
        argv = [sys.executable, *GENERATION, str(self.db_path), str(self.directory)]
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as e:
            raise GenerationError(f"cannot start the generation of the pages: {e}") from e
        try:
            stdout, stderr = await child.communicate()
        except BaseException:  # cancelled: the daemon stops
            await _stop(child)
            raise
        return outcome(child.returncode, stdout, stderr)


async def _stop(child: asyncio.subprocess.Process) -> None:
    """Ask ``child`` to stop at its next page; kill it if it has not within STOP_SECONDS."""
    with contextlib.suppress(ProcessLookupError):
        child.terminate()
    waiting = asyncio.ensure_future(child.wait())
    await asyncio.wait([waiting], timeout=STOP_SECONDS)
    if not waiting.done():
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await waiting


def outcome(status: int | None, stdout: bytes, stderr: bytes) -> Rewrite:
    """What a generation's process did, from its exit status and output; GenerationError
    when it failed (its own words, else how it ended and the end of its stderr)."""
    said = stderr.decode(errors="replace").strip()
    try:
        answer = json.loads(stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if status == 0 and isinstance(answer, dict) and "written" in answer:
        for line in said.splitlines():
            log.warning("dashboard: %s", line)
        fields = ("written", "unchanged", "removed", "day_pages", "peak_kib")
        return Rewrite(*(int(answer[name]) for name in fields))
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        raise GenerationError(answer["error"])
    if isinstance(answer, dict) and answer.get("stopped"):
        raise GenerationError("the generation of the pages was stopped before its overview")
    ended = (
        f"was killed by signal {-status}"
        if status is not None and status < 0
        else f"exited with status {status}"
    )
    tail = said[-_STDERR_SHOWN:]
    raise GenerationError(f"the generation of the pages {ended}" + (f":\n{tail}" if tail else ""))
