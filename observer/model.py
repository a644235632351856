"""Plain data shared by every part of observer: runs, timers and the errors people see
(the recording side's events are observer/recording/events.py's)."""

from __future__ import annotations

import os
from enum import StrEnum

from observer.records import NamedTuple

# Where the kernel gives this boot's ID (a UUID with dashes).
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


class ObserverError(Exception):
    """An error a person can act on; its message names the bad value and what to do."""


class StoreError(ObserverError):
    """The database cannot be opened, read or written."""


class ConfigError(ObserverError):
    """The configuration file is unreadable or holds a bad value."""


class UnknownUnitError(ObserverError):
    """No runs are recorded for the unit a person asked about."""


class Source(StrEnum):
    """Which observation recorded a run."""

    BUS = "bus"
    JOURNAL = "journal"
    WRAPPER = "wrapper"


class ProblemKind(StrEnum):
    """An open problem of a unit: alert_state keeps the first three, alert_problems the others;
    the alert rules open and close them, the readers show them."""

    FAILING = "failing"  # N runs in a row failed
    MISSED = "missed"  # a timer fired (or was due) and no run started
    STALE = "stale"  # no success for too long
    RATE = "rate"  # too many of the runs in a window failed
    SLOWER = "slower"  # the 7-day median duration grew against the 30 days before
    DEPENDENCY = "dependency"  # it failed, and systemd refused the starts of units needing it


def boot_id(path: str | os.PathLike[str] = BOOT_ID_PATH) -> str | None:
    """This boot's ID as the journal writes it (32 hex digits); None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip().replace("-", "")
    except OSError:
        return None


def signal_name(number: int) -> str:
    """Name a signal the way systemd prints it (SIGKILL -> KILL)."""
    import signal  # noqa: PLC0415 (only for a run a signal ended)

    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def exit_facts(exit_code: str | None, exit_status: int | None) -> tuple[int | None, str | None]:
    """A main process's end as people read it: its exit status, or the signal that ended it."""
    killed = exit_code in ("killed", "dumped") and exit_status is not None
    return (
        exit_status if exit_code == "exited" else None,
        signal_name(exit_status) if killed and exit_status is not None else None,
    )


def exit_text(exit_status: int | None, signal: str | None) -> str:
    """How a run's main process ended, as every table, page and alert shows it: ``3``,
    ``SIGKILL`` (``signal 99`` for a number without a name), ``-`` when unknown."""
    if signal is not None:
        return f"signal {signal}" if signal.isdecimal() else f"SIG{signal}"
    return "-" if exit_status is None else str(exit_status)


# systemd's Result strings that mean the run succeeded.
SUCCESS_RESULTS = frozenset({"success"})
# Results of a start that systemd skipped (nothing ran, or ExecCondition= said no): neither
# success nor failure.
SKIPPED_RESULTS = frozenset({"condition", "exec-condition"})
# A run that can never end: its systemd (boot or manager) is gone.
INTERRUPTED = "interrupted"


def is_success(result: str | None) -> bool:
    """Whether a run with this Result succeeded (the store's SQL: ``summary.SUCCEEDED``)."""
    return result in SUCCESS_RESULTS


def is_skipped(result: str | None) -> bool:
    """Whether systemd skipped the start: neither success nor failure."""
    return result in SKIPPED_RESULTS


def is_failure(result: str | None) -> bool:
    """Whether a finished run with this Result failed: neither succeeded nor was skipped (an
    unknown result is a failure; the store's SQL: ``summary.FAILED``)."""
    return not is_success(result) and not is_skipped(result)


class Run(NamedTuple):
    """One invocation of a unit: what is known of it so far.

    Times are microseconds since the epoch, as systemd gives them. Fields that are not
    known yet are None; a run whose ``finished_usec`` is None is still running.
    """

    unit: str
    invocation_id: str | None  # None: a start systemd refused or skipped gets none
    host: str
    source: Source
    started_usec: int | None = None
    finished_usec: int | None = None
    result: str | None = None
    exit_code: str | None = None  # exited, killed, dumped
    exit_status: int | None = None
    trigger: str | None = None
    restarts: int | None = None
    boot_id: str | None = None
    reason: str | None = None  # the failed condition or the dependency that failed
    cpu_seconds: float | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    memory_peak_bytes: int | None = None
    # Identifies a run without invocation ID (made from its journal record), else None.
    start_key: str | None = None

    @property
    def key(self) -> str:
        """What identifies this run in the store: its invocation ID or its start key."""
        return self.invocation_id or self.start_key or ""

    @property
    def finished(self) -> bool:
        return self.finished_usec is not None

    @property
    def succeeded(self) -> bool:
        return is_success(self.result)


class TimerState(NamedTuple):
    """What is known of a timer: the service it starts and when it fires."""

    timer: str
    service: str
    next_elapse_usec: int | None
    last_trigger_usec: int | None


# The state rows that tell of journal history vacuumed before observer read it.
VACUUMED_PREFIX = "journal_vacuumed:"


class VacuumedJournal(NamedTuple):
    """Journal history that was vacuumed (or rotated away) while observer was not reading:
    from the last entry it had read to the oldest the journal still held (microseconds)."""

    after_usec: int
    until_usec: int

    @property
    def state_row(self) -> tuple[str, str]:
        return f"{VACUUMED_PREFIX}{self.after_usec}", str(self.until_usec)

    @classmethod
    def from_state_row(cls, key: str, value: str) -> VacuumedJournal | None:
        """The gap a state row tells of; None for a row that is not one (or is damaged)."""
        try:
            return cls(int(key.removeprefix(VACUUMED_PREFIX)), int(value))
        except ValueError:
            return None


def journal_cursor_usec(cursor: str) -> int | None:
    """The realtime timestamp a journal cursor carries (its ``t=`` field, in hex)."""
    for part in cursor.split(";"):
        key, _, value = part.partition("=")
        if key == "t":
            try:
                return int(value, 16)
            except ValueError:
                return None
    return None


def run_duration_usec(started_usec: int | None, finished_usec: int | None) -> int | None:
    """How long a run took: the one place a duration is computed, from the start and end
    the store keeps (the correlator makes them agree with systemd's monotonic clock where it
    has both); None when either is unknown or the end is before the start (a clock step)."""
    if started_usec is None or finished_usec is None or finished_usec < started_usec:
        return None
    return finished_usec - started_usec


def run_duration_seconds(started_usec: int | None, finished_usec: int | None) -> float | None:
    """``run_duration_usec`` in seconds."""
    usec = run_duration_usec(started_usec, finished_usec)
    return None if usec is None else usec / 1e6
