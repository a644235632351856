"""What the correlator asks of the daemon: the effects of the events it is fed."""

from __future__ import annotations

from dataclasses import dataclass

from observer.model import Run, TimerState


@dataclass(frozen=True, slots=True)
class RecordRun:
    """Effect: merge this (partial) run into the store."""

    run: Run


@dataclass(frozen=True, slots=True)
class ResolveJob:
    """Effect: ask systemd what job this is and what triggered it (answer: JobDetails)."""

    job_id: int
    unit: str


@dataclass(frozen=True, slots=True)
class RecordTimer:
    """Effect: remember a timer's schedule."""

    timer: TimerState


@dataclass(frozen=True, slots=True)
class CloseInterrupted:
    """Effect: a new systemd started at ``before_usec``: runs of ``host`` still open from
    before it can never end. Close them as interrupted at ``finished_usec`` (None: unknown)."""

    host: str
    before_usec: int
    finished_usec: int | None


@dataclass(frozen=True, slots=True)
class ReadCost:
    """Effect: ask systemd what the run that just ended cost (only the bus can say it)."""

    unit: str
    invocation_id: str


@dataclass(frozen=True, slots=True)
class ReadDefinition:
    """Effect: ask systemd what defines the unit whose run just started (its files, command)."""

    unit: str
    invocation_id: str


Effect = RecordRun | ResolveJob | RecordTimer | CloseInterrupted | ReadCost | ReadDefinition
