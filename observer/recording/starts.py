"""Each unit's recent starts (pure): where output without an invocation ID belongs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from observer.users import SEPARATOR

# How many units' starts to remember (kept after a unit is unloaded: output can trail).
_UNITS = 4096
# How many starts to remember per unit.
_PER_UNIT = 8
# How many runs' ends to remember.
_ENDS = _UNITS * 2


class Starts:
    """unit -> its newest starts, (start time, invocation ID), oldest first; and when the
    newest runs ended."""

    def __init__(self) -> None:
        self._starts: OrderedDict[str, list[tuple[int, str]]] = OrderedDict()
        self._ends: OrderedDict[str, int] = OrderedDict()
        # A user's prefix ("alice/") -> the user's units in _starts: a line journald could
        # only tag with the uid looks among them, not among every unit remembered.
        self._users: dict[str, set[str]] = {}

    def note(self, unit: str, invocation_id: str, start_usec: int | None) -> None:
        if start_usec is None:
            return
        starts = self._starts.get(unit)
        if starts is None:
            starts = self._starts[unit] = []
            self._user_unit(unit, known=True)
        self._starts.move_to_end(unit)
        while len(self._starts) > _UNITS:
            forgotten, _ = self._starts.popitem(last=False)
            self._user_unit(forgotten, known=False)
        if any(inv == invocation_id for _, inv in starts):
            return
        starts.append((start_usec, invocation_id))
        starts.sort()
        del starts[:-_PER_UNIT]

    def note_end(self, invocation_id: str, end_usec: int | None) -> None:
        """A run ended (its latest stamp is kept: the bus's and the journal's differ)."""
        if end_usec is None:
            return
        self._ends[invocation_id] = max(end_usec, self._ends.get(invocation_id, end_usec))
        self._ends.move_to_end(invocation_id)
        while len(self._ends) > _ENDS:
            self._ends.popitem(last=False)

    def ended_at(self, invocation_id: str) -> int | None:
        """When a run ended, if it is known to have."""
        return self._ends.get(invocation_id)

    def nearer_end(self, invocation_id: str, realtime_usec: int, next_start_usec: int) -> bool:
        """Whether a line stamped between a run's end and the next start is nearer that end.

        journald stamps every entry when it writes it (``__REALTIME_TIMESTAMP``, its event
        loop's time; the sender's time is ``_SOURCE_REALTIME_TIMESTAMP``), in the order it
        read its sockets: a run's last line can be written after PID 1's record of its
        end, the next run's first before its "Starting" (systemd logs that after it
        forked). Each is a few milliseconds at most, so the nearer of the two is the line's
        run.
        """
        end = self._ends.get(invocation_id)
        return end is not None and realtime_usec - end <= next_start_usec - realtime_usec

    def _user_unit(self, unit: str, *, known: bool) -> None:
        """Keep the index of users' units as a unit is remembered or forgotten."""
        user, separator, _ = unit.partition(SEPARATOR)
        if not separator:
            return
        units = self._users.setdefault(user + separator, set())
        if known:
            units.add(unit)
        else:
            units.discard(unit)
            if not units:
                del self._users[user + separator]

    def of_user(self, user_prefix: str) -> Iterator[tuple[int, str, str]]:
        """Every start remembered of a user's units: (start time, unit, invocation ID)."""
        for unit in self._users.get(user_prefix, ()):
            for start, inv in self._starts[unit]:
                yield start, unit, inv

    def all(self) -> Iterator[tuple[str, int, str]]:
        """Every start remembered: (unit, start time, invocation ID)."""
        for unit, known in self._starts.items():
            for start, inv in known:
                yield unit, start, inv

    def newest(self, unit: str) -> str | None:
        starts = self._starts.get(unit)
        return starts[-1][1] if starts else None

    def invocation_at(self, unit: str, realtime_usec: int) -> str | None:
        """The invocation of ``unit`` that was running at a time, as far as known.

        journald reads a line's invocation ID from the unit's cgroup, which is gone when
        the process already exited: such lines are attributed by unit and time.
        """
        starts = self._starts.get(unit)
        if not starts:
            return None
        before = [inv for start, inv in starts if start <= realtime_usec]
        return before[-1] if before else starts[0][1]

    def known_before(self, unit: str, realtime_usec: int) -> bool:
        """Whether a start of ``unit`` at or before a time is remembered."""
        return any(start <= realtime_usec for start, _ in self._starts.get(unit, ()))

    def between(self, unit: str, first_usec: int, last_usec: int) -> tuple[int, str] | None:
        """The start time and invocation of ``unit`` that started first within a span of
        time, if one did."""
        for start, inv in self._starts.get(unit, ()):
            if first_usec <= start <= last_usec:
                return start, inv
        return None

    def user_start_between(
        self, user_prefix: str, first_usec: int, last_usec: int
    ) -> tuple[int, str, str] | None:
        """The start time, unit and invocation of a user (``alice/``) that started first
        within a span."""
        starts = sorted(
            found for found in self.of_user(user_prefix) if first_usec <= found[0] <= last_usec
        )
        return starts[0] if starts else None

    def user_run_at(self, user_prefix: str, realtime_usec: int) -> tuple[str, str] | None:
        """The unit and invocation of a user (``alice/``) started last before a time: where
        a line goes that journald could only tag with its uid (its process exited at once)."""
        starts = sorted(found for found in self.of_user(user_prefix) if found[0] <= realtime_usec)
        return (starts[-1][1], starts[-1][2]) if starts else None
