"""Numbers from outside (journal, bus, fleet hosts, metric and spool files) kept in range.

SQLite's integers end at 2^63-1: a larger one (or a smaller than -2^63) cannot be stored,
and binding it raises OverflowError far from where it came in. Each parser checks its
numbers here, where they are read: an out-of-range one becomes None (the fact is lost, the
run is kept) and is counted by source and field, for `/metrics` and the daemon's log.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# systemd's "none", "infinity" or "not accounted" on the bus (USEC_INFINITY, UINT64_MAX).
UINT64_MAX = 2**64 - 1


class Rejections:
    """How many numbers each (source, field) had out of range; logged once per kind."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._guard = threading.Lock()  # the journal reader counts on its own thread

    def count(self, source: str, field: str, value: object) -> None:
        """Note one rejected value (the first of its kind is logged)."""
        with self._guard:
            seen = self._counts.get((source, field), 0)
            self._counts[source, field] = seen + 1
        if not seen:
            shown = str(value)[:40]
            log.warning(
                "%s: %s = %s is out of range: stored as unknown (said once per field; "
                "see observer_input_rejected_total)",
                source, field, shown,
            )  # fmt: skip

    def counts(self) -> dict[tuple[str, str], int]:
        """A copy of the counts, by (source, field)."""
        with self._guard:
            return dict(self._counts)

    def clear(self) -> None:
        """Forget every count (tests)."""
        with self._guard:
            self._counts.clear()


# One per process, as the daemon has one log: every parser counts here.
REJECTED = Rejections()


def in_range(
    number: int | None,
    source: str,
    field: str,
    *,
    low: int = INT64_MIN,
    high: int = INT64_MAX,
    absent: int | None = None,
) -> int | None:
    """``number`` if SQLite (and ``low``..``high``) can hold it, else None: counted, unless
    it is ``absent``, the source's own word for "none" (systemd's UINT64_MAX on the bus)."""
    if number is None or low <= number <= high:
        return number
    if number != absent:
        REJECTED.count(source, field, number)
    return None
