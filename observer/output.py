"""A run's output: what to keep of it under a byte budget, and how to show it safely."""

from __future__ import annotations

from collections import deque

from observer.records import Mutable

# Control characters but tab and newline, shown as \xNN.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x09), *range(0x0B, 0x20), 0x7F)}


def printable(message: bytes) -> str:
    """Show bytes as text without losing anything: bad UTF-8 and control bytes as \\xNN."""
    text = message.decode("utf-8", errors="backslashreplace")
    return text.translate(_CONTROL)


def cut_line(message: bytes, line_limit: int) -> tuple[bytes, int]:
    """Cut one over-long line to ``line_limit`` bytes; return it and how many bytes went."""
    if len(message) <= line_limit:
        return message, 0
    return message[:line_limit], len(message) - line_limit


def dropped_marker(lines: int) -> str:
    """The line shown where output was dropped to stay within the budget."""
    return f"[... {lines} line{'s' if lines != 1 else ''} of output dropped ...]"


def lost_marker(lines: int) -> str:
    """The line shown where journald dropped output (its rate limit) before observer saw it."""
    return f"[... journald dropped {lines} line{'s' if lines != 1 else ''} (rate limit) ...]"


class OutputBudget(Mutable):
    """Keeps the start and the end of one invocation's output within ``limit`` bytes.

    Each line gets a sequence number; the first half of the budget keeps the earliest
    lines, the second half the latest ones, and lines in between are dropped (so a gap
    in sequence numbers marks where output was dropped).
    """

    __slots__ = (
        "bytes",
        "dropped_bytes",
        "dropped_lines",
        "head",
        "head_bytes",
        "head_closed",
        "limit",
        "lines",
        "next_seq",
        "tail",
        "tail_bytes",
    )  # fmt: skip

    def __init__(self, limit: int, *, next_seq: int = 0, lines: int = 0, bytes: int = 0) -> None:
        self.limit = limit
        self.next_seq = next_seq
        self.head: list[tuple[int, int]] = []
        self.tail: deque[tuple[int, int]] = deque()
        self.head_bytes = 0
        self.tail_bytes = 0
        self.head_closed = False
        self.lines = lines
        self.bytes = bytes
        self.dropped_lines = 0
        self.dropped_bytes = 0

    @property
    def line_limit(self) -> int:
        """The longest single line kept whole."""
        return max(1, self.limit // 4)

    @property
    def head_end(self) -> int | None:
        """Sequence number of the first line that is not part of the head."""
        if not self.head_closed:
            return None
        return self.head[-1][0] + 1 if self.head else 0

    def admit(self, size: int) -> tuple[int, list[int]]:
        """Take a line of ``size`` bytes: its sequence number and the lines to drop now."""
        seq = self.next_seq
        self.next_seq += 1
        self.lines += 1
        self.bytes += size
        if not self.head_closed and self.head_bytes + size <= self.limit // 2:
            self.head.append((seq, size))
            self.head_bytes += size
            return seq, []
        self.head_closed = True
        self.tail.append((seq, size))
        self.tail_bytes += size
        return seq, self._evict()

    def shrink(self, limit: int) -> list[int]:
        """Lower the budget (a run that succeeded keeps less); the lines to drop now.

        The start and the end are kept as with the smaller budget from the beginning:
        output that all fitted in the head so far loses its middle, not its end.
        """
        if limit >= self.limit:
            return []
        self.limit = limit
        half = limit // 2
        head: list[tuple[int, int]] = []
        head_bytes = 0
        for line in self.head:
            if head_bytes + line[1] > half:
                break
            head.append(line)
            head_bytes += line[1]
        rest = self.head[len(head) :] + list(self.tail)
        tail: deque[tuple[int, int]] = deque()
        tail_bytes = 0
        for line in reversed(rest):
            # The end must run unbroken up to the last line: stop at a line dropped
            # earlier, or the tail reaches back past that gap and opens a second one.
            if tail_bytes + line[1] > limit - half or line[0] != self.next_seq - 1 - len(tail):
                break
            tail.appendleft(line)
            tail_bytes += line[1]
        dropped = rest[: len(rest) - len(tail)]
        for _, size in dropped:
            self._count_drop(size)
        self.head, self.head_bytes = head, head_bytes
        self.tail, self.tail_bytes = tail, tail_bytes
        self.head_closed = True
        return [seq for seq, _ in dropped]

    def _evict(self) -> list[int]:
        evicted = []
        tail_limit = self.limit - self.limit // 2
        while self.tail and self.tail_bytes > tail_limit:
            seq, size = self.tail.popleft()
            self.tail_bytes -= size
            self._count_drop(size)
            evicted.append(seq)
        return evicted

    def _count_drop(self, size: int) -> None:
        self.dropped_lines += 1
        self.dropped_bytes += size

    @classmethod
    def restore(
        cls,
        limit: int,
        kept: list[tuple[int, int]],
        head_end: int | None,
        counts: tuple[int, int, int, int],
    ) -> OutputBudget:
        """Rebuild a budget from what the store holds: (seq, size) rows and counters."""
        lines, total, dropped_lines, dropped_bytes = counts
        budget = cls(limit=limit, next_seq=lines, lines=lines, bytes=total)
        budget.dropped_lines, budget.dropped_bytes = dropped_lines, dropped_bytes
        for seq, size in sorted(kept):
            if head_end is None or seq < head_end:
                budget.head.append((seq, size))
                budget.head_bytes += size
            else:
                budget.tail.append((seq, size))
                budget.tail_bytes += size
        budget.head_closed = head_end is not None
        return budget
