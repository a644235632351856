"""The run correlator: turns bus and journal events into runs, without any I/O.

Both sources describe the same invocations, keyed by invocation ID. Each observation
becomes a partial ``Run``; the store merges partial runs of one invocation (first known
value of each field wins), so the order in which the bus and the journal report a run,
and how often, does not change what is recorded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from observer.model import Run, Source, TimerState
from observer.recording.effects import (
    CloseInterrupted,
    Effect,
    ReadCost,
    ReadDefinition,
    RecordRun,
    RecordTimer,
    ResolveJob,
)
from observer.recording.events import (
    Event,
    JobDetails,
    JobKind,
    JobNew,
    JobRemoved,
    Pid1Record,
    Reloading,
    UnitGone,
    UnitProperties,
)
from observer.recording.grouped import Grouped
from observer.recording.refused import RefusedStarts, Skip, is_refusal
from observer.recording.starts import Starts
from observer.users import unit_of

K = TypeVar("K")
V = TypeVar("V")

# ExecMainCode values are the CLD_* codes of waitid(2).
_EXEC_MAIN_CODES = {1: "exited", 2: "killed", 3: "dumped"}
# Job types whose job starts a new invocation of the unit.
_STARTING_JOB_TYPES = frozenset({"start", "restart", "try-restart", "reload-or-start"})
# A run that began this soon after its timer fired was started by it.
_TIMER_TO_START_USEC = 2_000_000
# How many finished invocations and job triggers to remember for late events.
_MEMORY = 4096


def invocation_hex(value: object) -> str | None:
    """Decode the InvocationID property (16 bytes) into the journal's hex form."""
    if isinstance(value, bytes | bytearray) and len(value) == 16 and any(value):
        return bytes(value).hex()
    if isinstance(value, list) and len(value) == 16 and any(value):
        return bytes(value).hex()
    return None


def _usec(value: object) -> int | None:
    if isinstance(value, int) and 0 < value < 2**63:
        return value
    return None


def _stamp(values: dict[str, object], name: str) -> tuple[int | None, int | None]:
    """A timestamp property of systemd's and its ``...Monotonic`` twin (None: not given)."""
    return _usec(values.get(name)), _usec(values.get(f"{name}Monotonic"))


@dataclass(slots=True)
class _Invocation:
    unit: str
    invocation_id: str
    job_id: int | None = None
    started_usec: int | None = None
    started_monotonic_usec: int | None = None  # systemd's, from the bus; None: not given
    seen_live: bool = False
    finished: bool = False


@dataclass(slots=True)
class _TimerFired:
    timer: str
    usec: int
    run: str | None = None


@dataclass(slots=True)
class _Unit:
    values: dict[str, object]
    invocation_id: str | None = None
    last_end_usec: int = 0
    last_end_monotonic_usec: int = 0
    job_id: int | None = None


class Correlator:
    """Feed it events; it returns the effects they imply. Deterministic, no I/O."""

    def __init__(
        self,
        host: str,
        observes: Callable[[str], bool] = lambda unit: True,
        boot_id: str | None = None,
    ) -> None:
        self.host = host
        self.boot_id = boot_id
        self.observes = observes
        self._units: dict[str, _Unit] = {}
        self._invocations: OrderedDict[str, _Invocation] = OrderedDict()
        # The invocations remembered by job (``_Invocation.job_id``): a job's details find
        # their runs without a walk over every invocation.
        self._job_runs: Grouped[int] = Grouped()
        # The invocations remembered by unit, in _invocations' order (least recently
        # touched first): a timer's firing finds its service's runs without a walk.
        self._unit_runs: Grouped[str] = Grouped()
        self._job_triggers: OrderedDict[int, str | None] = OrderedDict()
        self._timer_services: dict[str, str] = {}
        # service -> the timer that last fired for it, when, and the one run it started.
        self._last_triggers: dict[str, _TimerFired] = {}
        # Kept after a unit is unloaded (GC, transient): its output can still arrive.
        self.starts = Starts()
        self._reloading = False
        self._refused = RefusedStarts(host)

    def feed(self, event: Event) -> list[Effect]:
        """Apply one event and return what must happen because of it."""
        match event:
            case UnitProperties():
                return self._on_properties(event)
            case Pid1Record():
                return self._on_pid1_record(event)
            case JobNew():
                return self._on_job_new(event)
            case JobDetails():
                return self._on_job_details(event)
        self._note(event)
        return []

    def _note(self, event: Event) -> None:
        """The events that only change what is known: a job gone, a unit gone, a reload."""
        match event:
            case JobRemoved():
                unit = self._units.get(event.unit)
                if unit is not None and unit.job_id == event.job_id:
                    unit.job_id = None
            case UnitGone():
                # daemon-reload removes and re-adds every unit: keep what we know.
                if not self._reloading:
                    self._units.pop(event.unit, None)
                    self._timer_services.pop(event.unit, None)
            case Reloading():
                self._reloading = event.active

    def running(self) -> dict[str, str]:
        """Units with an invocation that has begun and not ended: unit -> invocation ID."""
        invocations = self._invocations.values()
        return {inv.unit: inv.invocation_id for inv in invocations if not inv.finished}

    def invocation_at(self, unit: str, realtime_usec: int) -> str | None:
        """The invocation of ``unit`` that was running at a time (observer/recording/starts.py)."""
        return self.starts.invocation_at(unit, realtime_usec)

    def user_run_at(self, user_prefix: str, realtime_usec: int) -> tuple[str, str] | None:
        return self.starts.user_run_at(user_prefix, realtime_usec)

    def ended_last(self, unit: str, invocation_id: str) -> bool:
        """Whether ``invocation_id`` is the newest start known of ``unit`` and has ended."""
        inv = self._invocations.get(invocation_id)
        return self.starts.newest(unit) == invocation_id and inv is not None and inv.finished

    # -- bus ---------------------------------------------------------------------------

    def _on_properties(self, event: UnitProperties) -> list[Effect]:
        if event.interface == "Timer":
            return self._on_timer(event)
        if not event.unit.endswith(".service") or not self.observes(event.unit):
            return []
        unit = self._units.get(event.unit)
        if unit is None:
            unit = self._units[event.unit] = _Unit(values={})
        if event.interface == "Service":
            # The type interface is sent before Unit for the same change: just remember it.
            unit.values.update(event.values)
            return []
        if event.interface != "Unit":
            return []
        unit.values.update(event.values)
        return self._on_unit_state(event.unit, unit)

    def _on_unit_state(self, name: str, unit: _Unit) -> list[Effect]:
        """A service's state changed: a run seen alive begins here, or one seen alive ends."""
        invocation_id = invocation_hex(unit.values.get("InvocationID"))
        if invocation_id is None:
            return []
        if invocation_id != unit.invocation_id:
            unit.invocation_id = invocation_id
            inv = self._remember(name, invocation_id)
            if inv.job_id is None:
                self._give_job(inv, unit.job_id)
        inv = self._remember(name, invocation_id)
        ended = _looks_ended(unit)
        if not ended and not inv.seen_live:
            # A new invocation ID can show while the unit still looks like its last run
            # (inactive, stale Result): only a run seen alive is timed and ended from here.
            return self._seen_alive(name, unit, inv)
        if ended and inv.seen_live and not inv.finished and "Result" in unit.values:
            return self._seen_ended(name, unit, inv)
        return []

    def _seen_alive(self, name: str, unit: _Unit, inv: _Invocation) -> list[Effect]:
        inv.seen_live = True
        inv.started_usec, inv.started_monotonic_usec = self._start_stamp(unit)
        self.starts.note(name, inv.invocation_id, inv.started_usec)
        self._claim_timer(inv)
        run = self._run(inv, Source.BUS, started_usec=inv.started_usec)
        started = ReadDefinition(name, inv.invocation_id)
        return [RecordRun(run), started, *self._trigger_effects(inv)]

    def _seen_ended(self, name: str, unit: _Unit, inv: _Invocation) -> list[Effect]:
        inv.finished = True
        finished, finished_monotonic = self._end_stamp(unit, unit.values.get("SubState"))
        started, started_monotonic = inv.started_usec, inv.started_monotonic_usec
        if (
            started is not None
            and started_monotonic is not None
            and finished_monotonic is not None
            and finished_monotonic >= started_monotonic
        ):
            # The wall clock may have been stepped (NTP, an admin) while it ran: systemd's
            # monotonic clock tells how long it took, so the end is put that far after the
            # start, which keeps the run's duration true (and never negative).
            finished = started + finished_monotonic - started_monotonic
        self.starts.note_end(inv.invocation_id, finished)
        effects: list[Effect] = [
            RecordRun(self._bus_run(inv, unit, finished)),
            ReadCost(name, inv.invocation_id),
        ]
        if finished is not None:
            unit.last_end_usec = max(unit.last_end_usec, finished)
        if finished_monotonic is not None:
            unit.last_end_monotonic_usec = max(unit.last_end_monotonic_usec, finished_monotonic)
        return effects

    def _start_stamp(self, unit: _Unit) -> tuple[int | None, int | None]:
        """When the run began: (realtime, monotonic or None), as systemd stamped it."""
        # After an automatic restart the unit never went inactive: stamps older than the
        # end of the last run belong to an earlier invocation. Older by the monotonic clock
        # where systemd gave it: the wall clock may have been stepped back since.
        known = [
            (realtime, monotonic)
            for realtime, monotonic in (
                _stamp(unit.values, "InactiveExitTimestamp"),
                _stamp(unit.values, "StateChangeTimestamp"),
                _stamp(unit.values, "ExecMainStartTimestamp"),
            )
            if realtime is not None
            and (
                monotonic > unit.last_end_monotonic_usec
                if monotonic is not None and unit.last_end_monotonic_usec
                else realtime > unit.last_end_usec
            )
        ]
        if not known:
            return None, None
        if all(monotonic is not None for _, monotonic in known):
            return min(known, key=lambda stamp: stamp[1] or 0)
        return min(realtime for realtime, _ in known), None

    def _end_stamp(self, unit: _Unit, sub_state: object) -> tuple[int | None, int | None]:
        """When the run ended: (realtime, monotonic or None), as systemd stamped it."""
        if sub_state == "exited":
            return _stamp(unit.values, "ExecMainExitTimestamp")
        for name in ("StateChangeTimestamp", "InactiveEnterTimestamp"):
            realtime, monotonic = _stamp(unit.values, name)
            if realtime is not None:
                return realtime, monotonic
        return None, None

    def _bus_run(self, inv: _Invocation, unit: _Unit, finished_usec: int | None) -> Run:
        code = _EXEC_MAIN_CODES.get(_int(unit.values.get("ExecMainCode")) or 0)
        status = _int(unit.values.get("ExecMainStatus"))
        result = unit.values.get("Result")
        restarts = _int(unit.values.get("NRestarts"))
        return self._run(
            inv,
            Source.BUS,
            boot_id=self.boot_id,
            started_usec=inv.started_usec,
            finished_usec=finished_usec,
            result=result if isinstance(result, str) else None,
            exit_code=code,
            exit_status=status if code is not None else None,
            restarts=restarts,
        )

    def _on_job_new(self, event: JobNew) -> list[Effect]:
        if not event.unit.endswith(".service") or not self.observes(event.unit):
            return []
        unit = self._units.get(event.unit)
        if unit is None:
            unit = self._units[event.unit] = _Unit(values={})
        unit.job_id = event.job_id
        # A unit's properties are sent before its JobNew: the invocation the job started
        # may already be known, seen beginning but without a job yet.
        if unit.invocation_id is not None:
            inv = self._invocations.get(unit.invocation_id)
            if inv is not None and inv.job_id is None and not inv.finished:
                self._give_job(inv, event.job_id)
        return [ResolveJob(event.job_id, event.unit)]

    def _on_job_details(self, event: JobDetails) -> list[Effect]:
        trigger = event.trigger if event.job_type in _STARTING_JOB_TYPES else None
        effects: list[Effect] = []
        for inv in self.invocations_of_job(event.job_id):
            if event.job_type == "unknown":
                # The job ended before it could be asked (a short Type=simple start): a
                # timer of the unit that fired just before the run began started it.
                trigger = self._timer_fired_for(inv)
            self._job_triggers[event.job_id] = trigger
            effects.extend(self._trigger_effects(inv))
        for skip in self._refused.of_job(event.job_id):
            found = self._timer_for_skip(skip) if event.job_type == "unknown" else trigger
            if found is not None:
                effects.append(RecordRun(self._refused.triggered(skip, found)))
        self._job_triggers[event.job_id] = trigger
        _trim(self._job_triggers)
        return effects

    def _timer_for_skip(self, skip: Skip) -> str | None:
        fired = self._last_triggers.get(skip.run.unit)
        started = skip.run.started_usec
        if fired is None or fired.run is not None or started is None:
            return None
        if 0 <= started - fired.usec <= _TIMER_TO_START_USEC:
            fired.run = skip.run.key
            return fired.timer
        return None

    def _timer_fired_for(self, inv: _Invocation) -> str | None:
        fired = self._last_triggers.get(inv.unit)
        if fired is None or fired.run != inv.invocation_id:
            return None
        return fired.timer

    def _claim_timer(self, inv: _Invocation) -> None:
        """A timer's firing starts one run: the first to begin soon after it."""
        fired = self._last_triggers.get(inv.unit)
        if fired is None or fired.run is not None or inv.started_usec is None:
            return
        if 0 <= inv.started_usec - fired.usec <= _TIMER_TO_START_USEC:
            fired.run = inv.invocation_id

    def _trigger_effects(self, inv: _Invocation) -> list[Effect]:
        if inv.job_id is None:
            return []
        trigger = self._job_triggers.get(inv.job_id)
        if trigger is None:
            return []
        return [RecordRun(self._run(inv, Source.BUS, trigger=trigger))]

    def _on_timer(self, event: UnitProperties) -> list[Effect]:
        service = event.values.get("Unit")
        if isinstance(service, str) and service:
            self._timer_services[event.unit] = service
        service_name = self._timer_services.get(
            event.unit, event.unit.removesuffix(".timer") + ".service"
        )
        if not self.observes(service_name):
            return []
        next_elapse = event.values.get("NextElapseUSecRealtime")
        last_trigger = event.values.get("LastTriggerUSec")
        if next_elapse is None and last_trigger is None:
            return []
        fired = _usec(last_trigger)
        skipped: list[Effect] = []
        previous = self._last_triggers.get(service_name)
        if fired is not None and (previous is None or previous.usec != fired):
            # A user's timer is named as its manager names it (the trigger of a run).
            self._last_triggers[service_name] = _TimerFired(unit_of(event.unit), fired)
            # The run it started may already be known (signals of two units, any order).
            for inv in reversed(self.runs_of_unit(service_name)):
                if inv.seen_live:
                    self._claim_timer(inv)
                    break
            skip = self._refused.newest_untriggered(service_name)
            if skip is not None and (timer := self._timer_for_skip(skip)) is not None:
                skipped.append(RecordRun(self._refused.triggered(skip, timer)))
        return [
            *skipped,
            RecordTimer(
                TimerState(
                    timer=event.unit,
                    service=service_name,
                    next_elapse_usec=_usec(next_elapse),
                    last_trigger_usec=_usec(last_trigger),
                )
            ),
        ]

    # -- journal -----------------------------------------------------------------------

    def _on_pid1_record(self, record: Pid1Record) -> list[Effect]:
        if record.kind is JobKind.STARTUP_FINISHED:
            return [self._new_manager(record)]
        self._refused.note_failure(record)
        if not record.unit.endswith(".service") or not self.observes(record.unit):
            return []
        if is_refusal(record):
            return self._on_refused_start(record)
        if record.kind is JobKind.START_FAILED:
            return self._on_start_failed(record)
        on_record = _RUN_RECORDS.get(record.kind)
        if not record.invocation_id or on_record is None:
            return []
        return on_record(self, record)

    def _on_start_failed(self, record: Pid1Record) -> list[Effect]:
        """A start that failed on the start limit its timer hit: a refusal the timer caused."""
        skip = self._refused.limited_job(record)
        trigger = None if skip is None else self._job_triggers.get(skip.job_id or 0)
        if skip is not None and trigger is not None:
            return [RecordRun(self._refused.triggered(skip, trigger))]
        return []

    def _on_resources(self, record: Pid1Record) -> list[Effect]:
        """What a run consumed, logged as it ended."""
        inv = self._remember(record.unit, record.invocation_id)
        cpu_seconds = None if record.cpu_usec is None else record.cpu_usec / 1e6
        run = self._run(
            inv,
            Source.JOURNAL,
            cpu_seconds=cpu_seconds,
            io_read_bytes=record.io_read_bytes,
            io_write_bytes=record.io_write_bytes,
            memory_peak_bytes=record.memory_peak_bytes,
        )
        return [RecordRun(run)]

    def _on_starting(self, record: Pid1Record) -> list[Effect]:
        inv = self._remember(record.unit, record.invocation_id)
        self.starts.note(record.unit, record.invocation_id, record.realtime_usec)
        if record.job_id is not None and inv.job_id is None:
            self._give_job(inv, record.job_id)
        run = self._run(
            inv, Source.JOURNAL, started_usec=record.realtime_usec, boot_id=record.boot_id
        )
        return [RecordRun(run), *self._trigger_effects(inv)]

    def _on_started(self, record: Pid1Record) -> list[Effect]:
        # Transient units log no "Starting": "Started" is the best start known then.
        inv = self._remember(record.unit, record.invocation_id)
        self.starts.note(record.unit, record.invocation_id, record.realtime_usec)
        return [RecordRun(self._run(inv, Source.JOURNAL, started_usec=record.realtime_usec))]

    def _on_main_exited(self, record: Pid1Record) -> list[Effect]:
        inv = self._remember(record.unit, record.invocation_id)
        run = self._run(
            inv,
            Source.JOURNAL,
            exit_code=record.exit_code,
            exit_status=record.exit_status,
            boot_id=record.boot_id,
        )
        return [RecordRun(run)]

    def _on_ended(self, record: Pid1Record) -> list[Effect]:
        """A run deactivated, failed or (a oneshot) finished."""
        if record.kind is JobKind.FAILED and record.unit_result == "start-limit-hit":
            # Logged with the previous run's invocation ID: the refusal is its own run.
            return []
        inv = self._remember(record.unit, record.invocation_id)
        result = "success" if record.kind is not JobKind.FAILED else record.unit_result
        result = result or "unknown"
        inv.finished = True
        self.starts.note_end(record.invocation_id, record.realtime_usec)
        # A clean exit is logged at debug level only: success means it exited 0.
        exit_code, exit_status = ("exited", 0) if result == "success" else (None, None)
        run = self._run(
            inv,
            Source.JOURNAL,
            finished_usec=record.realtime_usec,
            result=result,
            exit_code=exit_code,
            exit_status=exit_status,
            boot_id=record.boot_id,
        )
        return [RecordRun(run)]

    def _on_restart_scheduled(self, record: Pid1Record) -> list[Effect]:
        if record.invocation_id not in self._invocations:
            return []  # only a run already known gets its restart count
        inv = self._remember(record.unit, record.invocation_id)
        return [RecordRun(self._run(inv, Source.JOURNAL, restarts=record.restarts))]

    def _on_refused_start(self, record: Pid1Record) -> list[Effect]:
        """A start that got no invocation: a condition, a dependency, the start limit."""
        skip = self._refused.refused(record)
        trigger = None if record.job_id is None else self._job_triggers.get(record.job_id)
        if trigger is None:
            trigger = self._timer_for_skip(skip)
        if trigger is not None:
            self._refused.triggered(skip, trigger)
        return [RecordRun(skip.run)]

    def _new_manager(self, record: Pid1Record) -> CloseInterrupted:
        """A manager finished starting: what it ran before it can never end now."""
        started = record.realtime_usec - (record.userspace_usec or 0)
        noted = {inv: usec for _, usec, inv in self.starts.all()}
        for inv in self._invocations.values():
            began = inv.started_usec or noted.get(inv.invocation_id)
            if began is not None and began < started:
                inv.finished = True
        return CloseInterrupted(self.host, started, record.previous_usec)

    # -- shared ------------------------------------------------------------------------

    def _remember(self, unit: str, invocation_id: str) -> _Invocation:
        inv = self._invocations.get(invocation_id)
        if inv is None:
            inv = self._invocations[invocation_id] = _Invocation(unit, invocation_id)
            self._unit_runs.move(invocation_id, None, unit)
            while len(self._invocations) > _MEMORY:
                forgotten_id, forgotten = self._invocations.popitem(last=False)
                self._give_job(forgotten, None)
                self._unit_runs.move(forgotten_id, forgotten.unit, None)
        else:
            self._invocations.move_to_end(invocation_id)
            # Mostly it is its unit's last already: events come of a unit's newest run.
            if self._unit_runs.of(inv.unit)[-1] != invocation_id:
                self._unit_runs.move(invocation_id, inv.unit, inv.unit)
        return inv

    def runs_of_unit(self, unit: str) -> list[_Invocation]:
        """A unit's invocations remembered, least recently touched first."""
        return [self._invocations[i] for i in self._unit_runs.of(unit)]

    def _give_job(self, inv: _Invocation, job_id: int | None) -> None:
        """Set the job of an invocation (None: none, or forgotten), and its index."""
        self._job_runs.move(inv.invocation_id, inv.job_id, job_id)
        inv.job_id = job_id

    def invocations_of_job(self, job_id: int) -> list[_Invocation]:
        """The invocations remembered with a job, in the order they got it."""
        return [self._invocations[i] for i in self._job_runs.of(job_id)]

    def _run(self, inv: _Invocation, source: Source, **known: object) -> Run:
        # Only invocations are remembered here: their ID is never empty.
        return Run(unit=inv.unit, invocation_id=inv.invocation_id, host=self.host, source=source,
                   **known)  # type: ignore[arg-type]  # fmt: skip


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# What each kind of record about a run with an invocation ID tells of it.
_RUN_RECORDS: dict[JobKind, Callable[[Correlator, Pid1Record], list[Effect]]] = {
    JobKind.RESOURCES: Correlator._on_resources,
    JobKind.STARTING: Correlator._on_starting,
    JobKind.STARTED: Correlator._on_started,
    JobKind.MAIN_EXITED: Correlator._on_main_exited,
    JobKind.DEACTIVATED: Correlator._on_ended,
    JobKind.FAILED: Correlator._on_ended,
    JobKind.FINISHED: Correlator._on_ended,
    JobKind.RESTART_SCHEDULED: Correlator._on_restart_scheduled,
}


def _looks_ended(unit: _Unit) -> bool:
    """Whether a service's state is that of a run that is over (or restarting)."""
    active_state = unit.values.get("ActiveState")
    sub_state = unit.values.get("SubState")
    return active_state in ("inactive", "failed") or sub_state in ("auto-restart", "exited")


def _trim(memory: OrderedDict[K, V]) -> None:
    while len(memory) > _MEMORY:
        memory.popitem(last=False)
