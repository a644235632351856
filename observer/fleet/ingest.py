"""A central observer's intake: the hosts' journals, as systemd-journal-remote received them.

Every entry is tagged with the host that wrote it (``_HOSTNAME``); each host gets a
correlator and output budgets of its own, exactly as its own observer has. journal-upload
delivers at least once (it re-sends one entry at each reconnect), so each entry's place in
its host's journal, (host, boot, monotonic time, the entry's hash), is checked against a
mark kept per (host, boot) and committed with the journal cursor: an entry at or before
the mark is one already taken.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from observer.config import Config
from observer.correlator import Correlator
from observer.fleet.records import RUN_RECORD_MESSAGE_ID, RunRecord, parse_record
from observer.journal import SYSTEM_ONLY, JournalEvent, JournalScope, parse_entry
from observer.run_output import RunOutput
from observer.store import Batch
from observer.store_thread import AsyncStore

log = logging.getLogger(__name__)

# The state rows holding each host's held output lines: "held_output HOST" (run_output.py).
HELD_PREFIX = "held_output "
# The state rows holding the marks: "fleet_mark HOST BOOT" -> {"usec": ..., "hashes": [...]}.
MARK_PREFIX = "fleet_mark "


@dataclass(frozen=True, slots=True)
class EntryPlace:
    """Where an entry stands in its host's own journal (the same on every re-send)."""

    host: str
    boot_id: str
    monotonic_usec: int
    entry_hash: str


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """An event read from a received journal, with the host and place it came from."""

    place: EntryPlace
    event: JournalEvent | RunRecord
    realtime_usec: int = 0  # the entry's time, as its host's clock said


def _text(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def _monotonic_usec(value: object) -> int | None:
    if isinstance(value, tuple):  # systemd-python: (timedelta, boot UUID)
        value = value[0]
    if isinstance(value, timedelta):
        return (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, int):
        return value
    try:
        return int(_text(value))
    except ValueError:
        return None


def _message_id(entry: Mapping[str, object]) -> str:
    return _text(entry.get("MESSAGE_ID")).replace("-", "")


def is_run_record(entry: Mapping[str, object]) -> bool:
    return _message_id(entry) == RUN_RECORD_MESSAGE_ID


def parse_local(entry: Mapping[str, object], scope: JournalScope) -> JournalEvent | None:
    """A host's own daemon reads its journal as before, leaving out its own run records."""
    return None if is_run_record(entry) else parse_entry(entry, scope)


def _place(entry: Mapping[str, object]) -> EntryPlace | None:
    host = _text(entry.get("_HOSTNAME"))
    monotonic = _monotonic_usec(entry.get("__MONOTONIC_TIMESTAMP"))
    boot_id = _text(entry.get("_BOOT_ID")).replace("-", "")
    cursor = _text(entry.get("__CURSOR"))
    parts = dict(p.split("=", 1) for p in cursor.split(";") if "=" in p)
    if not host or monotonic is None or "x" not in parts:
        return None
    return EntryPlace(host, boot_id, monotonic, parts["x"])


def parse_fleet_entry(entry: Mapping[str, object], scope: JournalScope) -> FleetEntry | None:
    """A received entry as an event of its host; None when it is about no run."""
    place = _place(entry)
    if place is None:
        return None
    event: JournalEvent | RunRecord | None
    if is_run_record(entry):
        event = parse_record(entry, place.host)
    else:
        # Remote hosts' users are unknown here: their own units are not read.
        event = parse_entry(entry, SYSTEM_ONLY)
    realtime = entry.get("__REALTIME_TIMESTAMP")
    usec = realtime if isinstance(realtime, int) else int(_text(realtime) or 0)
    return None if event is None else FleetEntry(place, event, usec)


@dataclass(slots=True)
class _Mark:
    monotonic_usec: int
    hashes: set[str] = field(default_factory=set)


class Marks:
    """How far each (host, boot) has been taken: decides whether an entry is new (pure)."""

    def __init__(self, stored: Mapping[str, str] | None = None) -> None:
        self._marks: dict[tuple[str, str], _Mark] = {}
        self._changed: set[tuple[str, str]] = set()
        for key, value in (stored or {}).items():
            _, host, boot = key.split(" ", 2)
            saved = json.loads(value)
            self._marks[(host, boot)] = _Mark(int(saved["usec"]), set(saved["hashes"]))

    def take(self, place: EntryPlace) -> bool:
        """Whether the entry at ``place`` is new; if so it becomes the mark."""
        key = (place.host, place.boot_id)
        mark = self._marks.get(key)
        if mark is not None:
            if place.monotonic_usec < mark.monotonic_usec:
                return False
            if place.monotonic_usec == mark.monotonic_usec:
                if place.entry_hash in mark.hashes:
                    return False
                mark.hashes.add(place.entry_hash)
                self._changed.add(key)
                return True
        self._marks[key] = _Mark(place.monotonic_usec, {place.entry_hash})
        self._changed.add(key)
        return True

    def changed(self) -> dict[str, str]:
        """The state rows of the marks moved since the last call."""
        rows = {}
        for host, boot in sorted(self._changed):
            mark = self._marks[(host, boot)]
            value = {"usec": mark.monotonic_usec, "hashes": sorted(mark.hashes)}
            rows[f"{MARK_PREFIX}{host} {boot}"] = json.dumps(value)
        self._changed.clear()
        return rows


@dataclass(slots=True)
class HostIntake:
    """What a central observer keeps for one host: its correlator and its runs' output."""

    correlator: Correlator
    output: RunOutput


class FleetIntake:
    """Every host's correlator and output, and the marks that keep each entry taken once."""

    def __init__(
        self,
        config: Config,
        store: AsyncStore,
        pending: Callable[[], Batch],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config
        self.store = store
        self.pending = pending
        self.flush = flush
        self.hosts: dict[str, HostIntake] = {}
        self.marks = Marks()
        self.duplicates = 0
        self.stored_output: set[str] = set()

        self.held: dict[str, str] = {}  # state rows of held lines, read at start

    def host(self, name: str) -> HostIntake:
        intake = self.hosts.get(name)
        if intake is None:
            correlator = Correlator(name, self.config.observe.observes)
            output = RunOutput(self.config, correlator, self.store, self.pending, self.flush)
            output.stored_output = self.stored_output  # shared: one set for the database
            output.restore_held(self.held.get(f"{HELD_PREFIX}{name}"))
            intake = self.hosts[name] = HostIntake(correlator, output)
        return intake

    def held_state(self) -> dict[str, str]:
        """Every host's held lines as state rows."""
        return {f"{HELD_PREFIX}{name}": h.output.held_state() for name, h in self.hosts.items()}

    def take(self, entry: FleetEntry) -> bool:
        """Whether ``entry`` is new (not a re-sent one already taken)."""
        if self.marks.take(entry.place):
            return True
        self.duplicates += 1
        log.info("skipped an entry %s sent again (journal-upload reconnected)", entry.place.host)
        return False

    @property
    def unattributed_lines(self) -> int:
        return sum(h.output.unattributed_lines for h in self.hosts.values())

    @property
    def lost_lines(self) -> int:
        return sum(h.output.lost_lines for h in self.hosts.values())

    def forget_old_budgets(self) -> None:
        for intake in self.hosts.values():
            intake.output.forget_old_budgets()

    def running(self) -> dict[str, str]:
        running: dict[str, str] = {}
        for intake in self.hosts.values():
            running.update(intake.correlator.running())
        return running
