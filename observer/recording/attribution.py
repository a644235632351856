"""Runs' output as the daemon reads it from the journal: each line attributed to its run and
kept within that run's budget, and what journald says it dropped."""

from __future__ import annotations

import base64
import bisect
import dataclasses
import functools
import json
import logging
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable

from observer.config import Config
from observer.model import is_success
from observer.output import OutputBudget, cut_line
from observer.recording.correlator import Correlator
from observer.recording.events import OutputLine, OutputSuppressed
from observer.store.database import Batch, OutputCounts, StoredLine
from observer.store.writer import AsyncStore
from observer.users import SEPARATOR

log = logging.getLogger(__name__)

# Budgets of finished runs are kept this long for output that reaches the journal late.
LATE_OUTPUT_SECONDS = 600
# How many finished results to remember for output arriving after its run ended.
_RESULT_MEMORY = 16384
# journald can write a run's first line (one without invocation ID) a few milliseconds
# before PID 1's "Starting" record of that run (seen: 0.3-4 ms): a line that comes after
# its unit's last run ended waits this long (in the journal's time) for a start to follow.
HOLD_USEC = 50_000


class StoredOutput:
    """The runs whose output the store holds and whose budget is not in memory: a line of
    one continues from the store (``RunOutput._budget``).

    Kept as the ``hash()`` of each invocation ID, not the ID: those read from the store at
    start are a sorted array of 8 bytes each (a day of a thousand units' runs is 144,000
    IDs: 1.1 MiB, where a set of the strings held 13 MiB of 114,000). Two IDs with one
    hash (one chance in 2**64 a pair) only cost a read of the store, which holds none.
    """

    def __init__(self, loaded: array[int] | None = None) -> None:
        self._loaded = array("q") if loaded is None else loaded  # sorted
        self._added: set[int] = set()

    def __contains__(self, invocation_id: str) -> bool:
        key = hash(invocation_id)
        if key in self._added:
            return True
        i = bisect.bisect_left(self._loaded, key)
        return i < len(self._loaded) and self._loaded[i] == key

    def add(self, invocation_id: str) -> None:
        self._added.add(hash(invocation_id))

    def discard(self, invocation_id: str) -> None:
        """Its budget is in memory again. One read at start stays in the array: its budget
        leaves memory only through forget_old_budgets, which adds it back."""
        self._added.discard(hash(invocation_id))

    def update(self, loaded: array[int]) -> None:
        """Add the (sorted) hashes read from the store."""
        self._loaded = array("q", sorted({*self._loaded, *loaded}))


class RunOutput:
    """Each run's output budget, and the lines, counts and losses it adds to a batch."""

    def __init__(
        self,
        config: Config,
        correlator: Correlator,
        store: AsyncStore,
        pending: Callable[[], Batch],
    ) -> None:
        self.config = config
        self.correlator = correlator
        self.store = store
        self.pending = pending  # the batch being gathered (the daemon replaces it at each write)
        self.budgets: dict[str, OutputBudget] = {}
        self.finished_at: dict[str, float] = {}
        self.results: OrderedDict[str, str] = OrderedDict()
        self.stored_output = StoredOutput()
        self.unattributed_lines = 0
        self.lost_lines = 0  # journald dropped them (its rate limit)
        # Each unit's invocation that printed the newest line read from the journal.
        self.last_printed: dict[str, str] = {}
        # Lines without invocation ID read after their unit's last run ended (HOLD_USEC).
        self.held: list[OutputLine] = []
        # Asked of every line read: the answer for a unit never changes (config is frozen).
        self.observes = functools.lru_cache(maxsize=4096)(config.observe.observes)

    def _limit_for(self, invocation_id: str) -> int:
        if is_success(self.results.get(invocation_id)):
            return self.config.output.max_bytes
        return self.config.output.failed_max_bytes

    def run_ended(self, invocation_id: str, result: str) -> None:
        """A run ended: a successful one's budget shrinks to the smaller limit."""
        self.results[invocation_id] = result
        self.results.move_to_end(invocation_id)
        while len(self.results) > _RESULT_MEMORY:
            self.results.popitem(last=False)
        self.finished_at[invocation_id] = time.monotonic()
        budget = self.budgets.get(invocation_id)
        if budget is not None and is_success(result):
            dropped = budget.shrink(self.config.output.max_bytes)
            self.pending().dropped.extend((invocation_id, seq) for seq in dropped)
            self._count(invocation_id, budget, None)

    def _count(self, invocation_id: str, budget: OutputBudget, last_usec: int | None) -> None:
        pending = self.pending()
        previous = pending.counts.get(invocation_id)
        if last_usec is None:
            last_usec = previous.last_usec if previous is not None else int(time.time() * 1e6)
        pending.counts[invocation_id] = OutputCounts(
            invocation_id,
            budget.lines,
            budget.bytes,
            budget.dropped_lines,
            budget.dropped_bytes,
            budget.head_end,
            last_usec,
        )

    async def _budget(self, invocation_id: str) -> OutputBudget:
        budget = self.budgets.get(invocation_id)
        if budget is not None:
            return budget
        limit = self._limit_for(invocation_id)
        if invocation_id in self.stored_output:
            # An earlier daemon stored some of this output: continue where it stopped.
            # (No flush first: it would commit part of a journal batch without its cursor.
            # The store holds all of this run's output: its budget was forgotten only with
            # nothing of it pending, see forget_old_budgets.)
            self.stored_output.discard(invocation_id)
            kept, counts, result = await self.store.load_output(invocation_id)
            if result is not None:
                limit = (
                    self.config.output.max_bytes
                    if is_success(result)
                    else self.config.output.failed_max_bytes
                )
            if counts is not None:
                budget = OutputBudget.restore(
                    limit,
                    kept,
                    counts.head_end,
                    (counts.lines, counts.bytes, counts.dropped_lines, counts.dropped_bytes),
                )
        if budget is None:
            budget = OutputBudget(limit=limit)
        self.budgets[invocation_id] = budget
        return budget

    async def add_output(self, line: OutputLine) -> None:
        """Attribute one line to its run and keep it if its budget allows."""
        t = line.realtime_usec
        if line.unit.endswith(SEPARATOR):  # a user's line without its unit
            found = self.correlator.user_run_at(line.unit, t)
            if found is None or self._ended_before(*found, t):
                # Perhaps the first line of the user's next run, whose start is still to be
                # read: held as a line of the user (release_held finds its run).
                self.held.append(line)
                return
            line = dataclasses.replace(line, unit=found[0], invocation_id=found[1])
        if not self.observes(line.unit):
            return
        if not line.invocation_id:
            unit = line.unit
            invocation_id = self.correlator.invocation_at(unit, t)
            ended = invocation_id is not None and self._ended_before(unit, invocation_id, t)
            if not self.correlator.starts.known_before(unit, t):
                # Begun before this daemon started (or not yet started): the store knows.
                invocation_id, ended = await self.store.run_started_before(
                    self.correlator.host, unit, t
                )
            if invocation_id is None or ended:
                # Perhaps the next run's, whose start is still to come: held with the run
                # it goes to if none starts (or "").
                self.held.append(dataclasses.replace(line, invocation_id=invocation_id or ""))
                return
            line = dataclasses.replace(line, invocation_id=invocation_id)
        await self._admit(line)

    def _ended_before(self, unit: str, invocation_id: str, realtime_usec: int) -> bool:
        """Whether the run a line stamped at a time would go to had ended by then (or, its
        end not known, is its unit's last run and has ended): the line may be the next
        run's. One stamped before its run's end is that run's, however late it was read."""
        end = self.correlator.starts.ended_at(invocation_id)
        if end is not None:
            return end < realtime_usec
        return self.correlator.ended_last(unit, invocation_id)

    async def release_held(self, now_usec: int | None) -> None:
        """Attribute held lines: to a run that started just after one, or to the run before
        it when that run's end is nearer or when the journal has gone ``HOLD_USEC`` past the
        line with no such start (or ``now_usec`` is None: the daemon stops)."""
        still: list[OutputLine] = []
        for line in self.held:
            waits, run = self._held_run(line, now_usec)
            if waits:
                still.append(line)
            elif run is None:  # no run to give it to
                self.unattributed_lines += 1
            else:
                unit, invocation_id = run
                await self._admit(dataclasses.replace(line, unit=unit, invocation_id=invocation_id))
        self.held = still

    def _held_run(
        self, line: OutputLine, now_usec: int | None
    ) -> tuple[bool, tuple[str, str] | None]:
        """(whether a held line waits on, the unit and invocation it goes to if not).

        A user's line (``alice/``) goes to any of the user's runs; a unit's line to one of
        its unit's, the run before it being the one it was held with.
        """
        t = line.realtime_usec
        starts = self.correlator.starts
        before: tuple[str, str] | None
        if line.unit.endswith(SEPARATOR):
            following = starts.user_start_between(line.unit, t, t + HOLD_USEC)
            before = self.correlator.user_run_at(line.unit, t)
        else:
            found = starts.between(line.unit, t, t + HOLD_USEC)
            following = None if found is None else (found[0], line.unit, found[1])
            before = (line.unit, line.invocation_id) if line.invocation_id else None
        if following is not None:
            start, unit, invocation_id = following
            if before is None or not starts.nearer_end(before[1], t, start):
                return False, (unit, invocation_id)
            return False, before
        if now_usec is not None and now_usec <= t + HOLD_USEC:
            return True, None
        return False, before

    def held_since(self) -> int | None:
        """The time of the earliest line held (None: none is)."""
        return min((line.realtime_usec for line in self.held), default=None)

    def held_state(self) -> str:
        """The held lines as a state row, committed with the journal cursor that passed them:
        after a crash they are held again, neither lost nor read twice."""
        return json.dumps(
            [
                [
                    ln.unit,
                    ln.realtime_usec,
                    ln.priority,
                    base64.b64encode(ln.message).decode(),
                    ln.invocation_id,
                ]
                for ln in self.held
            ]
        )

    def restore_held(self, state: str | None) -> None:
        try:
            saved = json.loads(state) if state else []
            self.held = [
                OutputLine(invocation_id, unit, usec, priority, base64.b64decode(message))
                for unit, usec, priority, message, invocation_id in saved
            ]
        except (ValueError, TypeError) as e:  # a damaged row loses those lines, nothing else
            log.warning("could not read the held output lines (%s): they are lost", e)

    async def _admit(self, line: OutputLine) -> None:
        """Keep a line of a known run, if its budget allows."""
        self.last_printed[line.unit] = line.invocation_id
        budget = await self._budget(line.invocation_id)
        message, cut = cut_line(line.message, budget.line_limit)
        seq, dropped = budget.admit(len(message))
        budget.bytes += cut
        budget.dropped_bytes += cut
        pending = self.pending()
        pending.lines.append(
            StoredLine(line.invocation_id, seq, line.realtime_usec, line.priority, message)
        )
        if dropped:
            pending.dropped.extend((line.invocation_id, s) for s in dropped)
        self._count(line.invocation_id, budget, line.realtime_usec)

    def output_suppressed(self, event: OutputSuppressed) -> None:
        """journald dropped lines of a unit: they belong to the run that printed last (it
        says so when the unit's next line comes after its window, often a later run's)."""
        if not self.observes(event.unit):
            return
        self.lost_lines += event.lines
        invocation_id = self.last_printed.get(event.unit) or event.invocation_id
        if invocation_id:
            self.pending().lost.append((invocation_id, event.lines, event.realtime_usec))

    def forget_old_budgets(self) -> None:
        """Drop budgets of runs that ended long ago (a late line reloads it from the store)."""
        horizon = time.monotonic() - LATE_OUTPUT_SECONDS
        pending = self.pending().counts
        for invocation_id, ended in list(self.finished_at.items()):
            if ended < horizon and invocation_id not in pending:
                del self.finished_at[invocation_id]
                if self.budgets.pop(invocation_id, None) is not None:
                    self.stored_output.add(invocation_id)
