"""The intake: where the daemon's events and journal entries become runs and their output.

The daemon holds one ``Intake`` and wires it the same way whatever it records. An
observer records its own host (``LocalIntake``: one ``HostIntake``, fed by the bus and the
local journal); a central observer records its fleet's hosts from the journals they send
(observer/fleet/ingest.py: a ``HostIntake`` per host). The daemon applies the effects the
intake returns, commits ``held_state()`` with the journal cursor, and the metrics read
``running()`` and the counters.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from observer.model import StoreError
from observer.recording.attribution import HOLD_USEC, RunOutput, StoredOutput
from observer.recording.correlator import Correlator
from observer.recording.effects import Effect, RecordRun
from observer.recording.events import Event, OutputLine, OutputSuppressed, Pid1Record
from observer.recording.journal import EntryParser, JournalEvent, JournalScope
from observer.store.writer import AsyncStore

log = logging.getLogger(__name__)

# The state row of the held output lines of an observer's own host (attribution.py).
HELD_OUTPUT_KEY = "held_output"
# Output stored this recently may still grow: its runs' budgets continue from the store.
RECENT_OUTPUT_SECONDS = 86400

# A run in progress as the intake knows it: (host, unit) -> invocation ID.
RunningRuns = dict[tuple[str, str], str]


class Intake(Protocol):
    """What the daemon feeds events and journal entries to, and reads back."""

    # True: the runs are this machine's own: its manager on the bus tells of them too, and
    # they are sent on as run records. False: a central observer's (no bus of its own).
    own_runs: bool

    def parse(self, entry: Mapping[str, object], scope: JournalScope) -> object | None:
        """A journal entry as what ``take`` is given (None: about no run)."""
        ...

    async def restore(self) -> None:
        """Read back what was held when the daemon last stopped (before the first entry)."""
        ...

    def feed(self, event: Event) -> list[Effect]:
        """One event of the bus: the effects for the daemon to apply."""
        ...

    async def take(self, entry: object) -> list[Effect]:
        """One parsed journal entry: its output attributed, its record fed; the effects."""
        ...

    async def reached(self, journal_usec: int | None) -> None:
        """A batch of entries is read up to ``journal_usec``: release held lines it passed."""
        ...

    def held_until(self) -> int | None:
        """When the journal, read past this time, releases a held line with no further
        entry (None: none is held, or held lines wait for their own host's entries)."""
        ...

    def waiting_output(self) -> dict[str, int]:
        """By host, the time of the earliest output line held for a start that may follow."""
        ...

    def held_state(self) -> dict[str, str]:
        """State rows to commit with the journal cursor (held lines, entries taken)."""
        ...

    def running(self) -> RunningRuns:
        """The runs begun and not ended, of every host recorded."""
        ...

    def forget_old_budgets(self) -> None:
        """Drop the output budgets of runs that ended long ago."""
        ...

    @property
    def events_fed(self) -> int:
        """Events fed to the correlators (the bus's and the journal's)."""
        ...

    @property
    def unattributed_lines(self) -> int:
        """Output lines no run could be found for."""
        ...

    @property
    def lost_lines(self) -> int:
        """Output lines journald said it dropped (its rate limit)."""
        ...


@dataclass(slots=True)
class HostIntake:
    """One host's runs: its correlator and the attribution of its runs' output."""

    correlator: Correlator
    output: RunOutput
    events_fed: int = 0

    def feed(self, event: Event) -> list[Effect]:
        """Run one event through the correlator; a run that ended settles its output budget."""
        self.events_fed += 1
        try:
            effects = self.correlator.feed(event)
        except Exception:  # one bad event never stops the daemon
            log.exception("could not process %r", event)
            return []
        for effect in effects:
            if isinstance(effect, RecordRun):
                run = effect.run
                if run.finished and run.result is not None and run.invocation_id is not None:
                    self.output.run_ended(run.invocation_id, run.result)
        return effects

    async def take(self, event: JournalEvent) -> list[Effect]:
        """One event read from the host's journal."""
        if isinstance(event, OutputLine):
            try:
                await self.output.add_output(event)
            except StoreError as e:
                log.error("could not load stored output: %s", e)
        elif isinstance(event, OutputSuppressed):
            self.output.output_suppressed(event)
        elif isinstance(event, Pid1Record):
            return self.feed(event)
        return []

    def running(self) -> RunningRuns:
        host = self.correlator.host
        return {(host, unit): invocation for unit, invocation in self.correlator.running().items()}


class LocalIntake:
    """An observer's own host: its manager's events from the bus, its local journal."""

    own_runs = True

    def __init__(self, host: HostIntake, store: AsyncStore, parse: EntryParser) -> None:
        self.host = host
        self.store = store
        self._parse = parse

    def parse(self, entry: Mapping[str, object], scope: JournalScope) -> object | None:
        return self._parse(entry, scope)

    async def restore(self) -> None:
        output = self.host.output
        output.stored_output = StoredOutput(await recent_output(self.store))
        output.restore_held(await self.store.read_state(HELD_OUTPUT_KEY))

    def feed(self, event: Event) -> list[Effect]:
        return self.host.feed(event)

    async def take(self, entry: object) -> list[Effect]:
        if isinstance(entry, Pid1Record | OutputLine | OutputSuppressed):
            return await self.host.take(entry)
        return []

    async def reached(self, journal_usec: int | None) -> None:
        if self.host.output.held and journal_usec is not None:
            await self.host.output.release_held(journal_usec)

    def held_until(self) -> int | None:
        since = self.host.output.held_since()
        return None if since is None else since + HOLD_USEC

    def waiting_output(self) -> dict[str, int]:
        since = self.host.output.held_since()
        return {} if since is None else {self.host.correlator.host: since}

    def held_state(self) -> dict[str, str]:
        return {HELD_OUTPUT_KEY: self.host.output.held_state()}

    def running(self) -> RunningRuns:
        return self.host.running()

    def forget_old_budgets(self) -> None:
        self.host.output.forget_old_budgets()

    @property
    def events_fed(self) -> int:
        return self.host.events_fed

    @property
    def unattributed_lines(self) -> int:
        return self.host.output.unattributed_lines

    @property
    def lost_lines(self) -> int:
        return self.host.output.lost_lines


async def recent_output(store: AsyncStore) -> array[int]:
    """The runs with output stored in the last day (their budgets continue from the store)."""
    return await store.recent_output(int((time.time() - RECENT_OUTPUT_SECONDS) * 1e6))
