"""What systemd says of the units it runs, on the bus and in the journal, as the recording
side reads it: PID 1's records, output lines, and the bus's signals and answers.

Reached as ``observer.model.NAME`` too (model.py imports this module on first use): a
reading command, which never needs them, does not pay for their classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a unit printed, as the journal holds it (bytes kept as they were)."""

    invocation_id: str
    unit: str
    realtime_usec: int
    priority: int
    message: bytes


class JobKind(StrEnum):
    """What a record written by PID 1 into the journal says about a run."""

    STARTING = "starting"
    STARTED = "started"
    FINISHED = "finished"  # a oneshot's start job ended: the run is over
    START_FAILED = "start-failed"
    MAIN_EXITED = "main-exited"
    DEACTIVATED = "deactivated"
    FAILED = "failed"
    CONDITION_SKIPPED = "condition-skipped"
    RESTART_SCHEDULED = "restart-scheduled"
    CONDITION_UNMET = "condition-unmet"  # a Condition*= check failed: nothing ran
    START_LIMIT = "start-limit"  # "Start request repeated too quickly."
    RESOURCES = "resources"  # "Consumed 1.2s CPU time": what the run cost
    STARTUP_FINISHED = "startup-finished"  # a manager finished starting


@dataclass(frozen=True, slots=True)
class Pid1Record:
    """A journal record written by PID 1 about one invocation of a unit."""

    kind: JobKind
    unit: str
    invocation_id: str
    realtime_usec: int
    boot_id: str | None = None
    exit_code: str | None = None
    exit_status: int | None = None
    unit_result: str | None = None
    job_id: int | None = None
    restarts: int | None = None
    job_result: str | None = None
    reason: str | None = None  # of a condition that failed: "ConditionPathExists=/x"
    cpu_usec: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    memory_peak_bytes: int | None = None  # in the "Consumed" record from systemd 255 on
    userspace_usec: int | None = None  # of a manager's start-up: how long it took
    previous_usec: int | None = None  # the journal's last entry before that start-up


@dataclass(frozen=True, slots=True)
class OutputSuppressed:
    """journald dropped lines of a unit (its rate limit): written when the next line came."""

    unit: str
    invocation_id: str  # of the line that came after the window, often a later run's
    realtime_usec: int
    lines: int


@dataclass(frozen=True, slots=True)
class UnitProperties:
    """Property values systemd sent for a unit on one interface (already decoded)."""

    unit: str
    interface: str  # Unit, Service, Timer: the last part of the interface name
    values: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobNew:
    """systemd queued a job for a unit."""

    job_id: int
    unit: str


@dataclass(frozen=True, slots=True)
class JobDetails:
    """What the job object said when asked: its type and the unit that triggered it."""

    job_id: int
    unit: str
    job_type: str
    trigger: str | None


@dataclass(frozen=True, slots=True)
class JobRemoved:
    """A job ended; this is not the end of the run (see SYSTEMD-FACTS.md)."""

    job_id: int
    unit: str
    result: str


@dataclass(frozen=True, slots=True)
class UnitGone:
    """systemd unloaded a unit (transient units vanish after they stop)."""

    unit: str


@dataclass(frozen=True, slots=True)
class Reloading:
    """systemd began (active) or finished a daemon-reload or daemon-reexec."""

    active: bool


Event = UnitProperties | JobNew | JobDetails | JobRemoved | UnitGone | Reloading | Pid1Record
