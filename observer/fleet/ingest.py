"""A central observer's intake: the hosts' journals, as systemd-journal-remote received them.

Every entry is tagged with the host that wrote it (``_HOSTNAME``); each host gets a
correlator and output budgets of its own, exactly as its own observer has. journal-upload
delivers at least once (it re-sends one entry at each reconnect), so each entry's place in
its host's journal, (host, boot, monotonic time, the entry's hash), is checked against
the newest entries taken of that host, kept in the state committed with the journal
cursor: an entry among them is one already taken.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from observer.bounds import in_range
from observer.config import Config
from observer.fleet.records import RUN_RECORD_MESSAGE_ID, RunRecord, parse_record
from observer.recording.attribution import RunOutput, StoredOutput
from observer.recording.correlator import Correlator
from observer.recording.effects import Effect
from observer.recording.events import Event
from observer.recording.intake import HostIntake, RunningRuns, recent_output
from observer.recording.journal import SYSTEM_ONLY, JournalEvent, JournalScope, parse_entry
from observer.store.database import Batch
from observer.store.writer import AsyncStore

log = logging.getLogger(__name__)

# The state rows holding each host's held output lines: "held_output HOST" (attribution.py).
HELD_PREFIX = "held_output "
# The state rows holding the marks: "fleet_mark HOST" -> the newest entries taken of HOST.
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
    if not isinstance(value, int):
        try:
            value = int(_text(value))
        except ValueError:
            return None
    return in_range(value, "fleet", "__MONOTONIC_TIMESTAMP", low=0)


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
    entry_hash = _cursor_hash(_text(entry.get("__CURSOR")))
    if not host or monotonic is None or entry_hash is None:
        return None
    return EntryPlace(host, boot_id, monotonic, entry_hash)


def _cursor_hash(cursor: str) -> str | None:
    """The entry's hash, the cursor's ``x=`` part (the last one, should there be several)."""
    for part in reversed(cursor.split(";")):
        if part.startswith("x="):
            return part[2:]
    return None


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
    usec = _realtime_usec(entry.get("__REALTIME_TIMESTAMP"))
    return None if event is None else FleetEntry(place, event, usec)


def _realtime_usec(value: object) -> int:
    """An entry's time (0 when it has none SQLite could hold: parse_entry counted it)."""
    if not isinstance(value, int):
        try:
            value = int(_text(value) or 0)
        except ValueError:
            return 0
    return value if 0 <= value < 2**63 else 0


class Marks:
    """The entries each host sent last: decides whether an entry is new (pure).

    A re-sent entry is one the uploader sent just before it reconnected, byte for byte the
    same: the same boot, monotonic time and hash. Times alone cannot order a host's
    entries (journald stamps a datagram when the kernel received it, a stream's line when
    it reads it: the journal's order is not always the monotonic clock's), so the newest
    ``WINDOW`` entries of each host are remembered instead, in the state committed with
    the cursor.
    """

    WINDOW = 256

    def __init__(self, stored: Mapping[str, str] | None = None) -> None:
        self._recent: dict[str, deque[str]] = {}
        self._known: dict[str, set[str]] = {}
        self._changed: set[str] = set()
        for key, value in (stored or {}).items():
            host = key.removeprefix(MARK_PREFIX)
            for identity in json.loads(value):
                self._remember(host, str(identity))
        self._changed.clear()

    def _remember(self, host: str, identity: str) -> None:
        recent = self._recent.setdefault(host, deque())
        known = self._known.setdefault(host, set())
        recent.append(identity)
        known.add(identity)
        while len(recent) > self.WINDOW:
            known.discard(recent.popleft())
        self._changed.add(host)

    def take(self, place: EntryPlace) -> bool:
        """Whether the entry at ``place`` is new; if so it is remembered."""
        identity = f"{place.boot_id}:{place.monotonic_usec}:{place.entry_hash}"
        if identity in self._known.get(place.host, ()):
            return False
        self._remember(place.host, identity)
        return True

    def changed(self) -> dict[str, str]:
        """The state rows of the hosts whose entries were taken since the last call."""
        rows = {
            f"{MARK_PREFIX}{host}": json.dumps(list(self._recent[host]))
            for host in sorted(self._changed)
        }
        self._changed.clear()
        return rows


class FleetIntake:
    """A central observer's intake: a HostIntake per host, and the marks that keep each
    received entry taken once."""

    own_runs = False

    def __init__(
        self,
        config: Config,
        store: AsyncStore,
        pending: Callable[[], Batch],
    ) -> None:
        self.config = config
        self.store = store
        self.pending = pending
        self.hosts: dict[str, HostIntake] = {}
        self.marks = Marks()
        self.duplicates = 0
        self.stored_output = StoredOutput()  # shared by the hosts: one for the database
        self.held: dict[str, str] = {}  # state rows of held lines, read at start
        # Hosts taken from since held_state: only their held lines can have changed.
        self.touched: set[str] = set()
        # Which units are observed, asked of every entry: the same answer for every host.
        self.observes = functools.lru_cache(maxsize=4096)(config.observe.observes)

    def parse(self, entry: Mapping[str, object], scope: JournalScope) -> FleetEntry | None:
        return parse_fleet_entry(entry, scope)

    async def restore(self) -> None:
        self.marks = Marks(await self.store.read_states(MARK_PREFIX))
        self.held = await self.store.read_states(HELD_PREFIX)
        self.stored_output.update(await recent_output(self.store))

    def host(self, name: str) -> HostIntake:
        intake = self.hosts.get(name)
        if intake is None:
            correlator = Correlator(name, self.observes)
            output = RunOutput(self.config, correlator, self.store, self.pending)
            output.stored_output = self.stored_output
            output.restore_held(self.held.get(f"{HELD_PREFIX}{name}"))
            intake = self.hosts[name] = HostIntake(correlator, output)
        return intake

    def feed(self, event: Event) -> list[Effect]:
        """A central observer follows no bus: its hosts' events come in their journals."""
        return []

    async def take(self, entry: object) -> list[Effect]:
        """One received entry, into its host's intake (a re-sent one is skipped)."""
        if not isinstance(entry, FleetEntry) or not self._new(entry):
            return []
        host = self.host(entry.place.host)
        self.touched.add(entry.place.host)
        event = entry.event
        effects: list[Effect] = []
        if isinstance(event, RunRecord):
            self.pending().records.append(event.run)
            if event.run.invocation_id and event.run.result:
                host.output.run_ended(event.run.invocation_id, event.run.result)
        else:
            effects = await host.take(event)
        # Each host's held lines are released by its own entries' times (clocks differ).
        if host.output.held:
            await host.output.release_held(entry.realtime_usec)
        return effects

    async def reached(self, journal_usec: int | None) -> None:
        """Nothing to do: held lines are released at each entry of their host."""

    def held_until(self) -> int | None:
        """None: a host's held lines wait for its own entries (its clock is not ours)."""
        return None

    def waiting_output(self) -> dict[str, int]:
        held = ((name, host.output.held_since()) for name, host in self.hosts.items())
        return {name: since for name, since in held if since is not None}

    def held_state(self) -> dict[str, str]:
        """The marks and the held lines of the hosts taken from, as state rows (the other
        hosts' rows hold what they held)."""
        rows = self.marks.changed()
        for name in sorted(self.touched):
            rows[f"{HELD_PREFIX}{name}"] = self.hosts[name].output.held_state()
        self.touched.clear()
        return rows

    def _new(self, entry: FleetEntry) -> bool:
        """Whether ``entry`` is new (not a re-sent one already taken)."""
        if self.marks.take(entry.place):
            return True
        self.duplicates += 1
        log.info("skipped an entry %s sent again (journal-upload reconnected)", entry.place.host)
        return False

    def running(self) -> RunningRuns:
        running: RunningRuns = {}
        for intake in self.hosts.values():
            running.update(intake.running())
        return running

    def forget_old_budgets(self) -> None:
        for intake in self.hosts.values():
            intake.output.forget_old_budgets()

    @property
    def events_fed(self) -> int:
        return sum(h.events_fed for h in self.hosts.values())

    @property
    def unattributed_lines(self) -> int:
        return sum(h.output.unattributed_lines for h in self.hosts.values())

    @property
    def lost_lines(self) -> int:
        return sum(h.output.lost_lines for h in self.hosts.values())
