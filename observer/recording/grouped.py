"""Keys grouped by a value they hold (pure): the correlator's indexes of its bounded memory.

An index answers what a walk over every remembered entry, kept to those holding a value,
would: the invocations of a job, a unit's invocations, the refused starts of a job. Its
owner moves a key whenever the value it is indexed by changes, and when it forgets it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

G = TypeVar("G", bound=Hashable)


class Grouped(Generic[G]):
    """Keys by group, each group's in the order they joined it (or were moved last)."""

    def __init__(self) -> None:
        self._groups: dict[G, list[str]] = {}

    def move(self, key: str, old: G | None, new: G | None) -> None:
        """``key`` leaves group ``old`` and joins ``new`` last (None: no group). Moved from
        a group to itself, it goes to its end."""
        if old is not None:
            keys = self._groups.get(old)
            if keys is not None and key in keys:
                keys.remove(key)
                if not keys:
                    del self._groups[old]
        if new is not None:
            self._groups.setdefault(new, []).append(key)

    def of(self, group: G) -> Sequence[str]:
        """The keys of a group, in order (empty: none)."""
        return self._groups.get(group, ())
