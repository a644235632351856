"""What `observer run` keeps of a job's output: lines by stream, within the daemon's budget.

The job's bytes pass through untouched elsewhere; this only splits copies of them into
lines and keeps what :class:`observer.output.OutputBudget` would keep with the run's final
limit: the first half of the budget holds the earliest lines, the second half the latest
ones. While the job runs its result is unknown, so the larger (failed) limit bounds memory;
:meth:`OutputCapture.finish` then picks the lines for the actual result. Blocks of lines
that can only end up dropped are counted without being split, so a job printing hundreds
of megabytes costs a few operations per read, not per line.
"""

from __future__ import annotations

from collections import deque

from observer.store.database import OutputCounts, StoredLine

STDOUT = "stdout"
STDERR = "stderr"
# Syslog priorities the lines are stored with: stderr shows as 'err' in `observer show`.
PRIORITY = {STDOUT: 6, STDERR: 3}


# Plain classes rather than dataclasses: each dataclass costs `observer run` (every cron
# job) half a millisecond to create when it starts.


class _Line:
    __slots__ = ("message", "seq", "stream", "usec")

    def __init__(self, seq: int, usec: int, stream: str, message: bytes) -> None:
        self.seq = seq
        self.usec = usec
        self.stream = stream
        self.message = message


class _Block:
    """Consecutive complete lines of one stream read at one time (each ends with a newline)."""

    __slots__ = ("data", "first_seq", "lines", "stream", "usec")

    def __init__(self, first_seq: int, usec: int, stream: str, data: bytes, lines: int) -> None:
        self.first_seq = first_seq
        self.usec = usec
        self.stream = stream
        self.data = data
        self.lines = lines

    @property
    def size(self) -> int:
        """Message bytes, without the newlines."""
        return len(self.data) - self.lines

    def split(self) -> list[_Line]:
        parts = self.data.split(b"\n")[:-1]
        return [
            _Line(self.first_seq + i, self.usec, self.stream, part) for i, part in enumerate(parts)
        ]


class CapturedOutput:
    """The lines to store for one run and its counters, as the daemon stores a unit's."""

    __slots__ = ("counts", "lines")

    def __init__(self, lines: list[StoredLine], counts: OutputCounts) -> None:
        self.lines = lines
        self.counts = counts


class OutputCapture:
    """Splits a job's stdout and stderr into lines and keeps the start and the end."""

    def __init__(self, invocation_id: str, max_limit: int) -> None:
        self.invocation_id = invocation_id
        self.max_limit = max(1, max_limit)
        self.line_limit = max(1, self.max_limit // 4)
        self.head: list[_Line] = []
        self.head_bytes = 0
        self.head_closed = False
        self.tail: deque[_Block] = deque()
        self.tail_bytes = 0
        self.next_seq = 0
        self.total_bytes = 0
        self.cut_bytes = 0
        self.last_usec = 0
        self._partial: dict[str, bytes] = {STDOUT: b"", STDERR: b""}
        self._partial_extra: dict[str, int] = {STDOUT: 0, STDERR: 0}

    def feed(self, stream: str, chunk: bytes, usec: int) -> None:
        """Take bytes the job wrote to ``stream`` (read at ``usec``)."""
        first_newline = chunk.find(b"\n")
        if first_newline < 0:
            self._extend_partial(stream, chunk)
            return
        self._extend_partial(stream, chunk[:first_newline])
        self._end_partial(stream, usec)
        last_newline = chunk.rfind(b"\n")
        if last_newline > first_newline:
            self._add_block(stream, chunk[first_newline + 1 : last_newline + 1], usec)
        self._extend_partial(stream, chunk[last_newline + 1 :])

    def close(self, usec: int) -> None:
        """The job's output ended: a last line without a newline still counts."""
        for stream in (STDOUT, STDERR):
            if self._partial[stream] or self._partial_extra[stream]:
                self._end_partial(stream, usec)

    def message(self, stream: str, text: str, usec: int) -> None:
        """Record a line observer itself wrote for the run (why the job could not start)."""
        self._add_line(_Line(self.next_seq, usec, stream, text.encode()), len(text.encode()))
        self.next_seq += 1

    def finish(self, limit: int) -> CapturedOutput:
        """The lines to keep under ``limit`` (the final budget of the run) and the counters."""
        limit = min(max(1, limit), self.max_limit)
        known = self.head + [line for block in self.tail for line in block.split()]
        head_limit, tail_limit = limit // 2, limit - limit // 2
        head: list[_Line] = []
        used = 0
        for expected, line in enumerate(known):
            if line.seq != expected or used + len(line.message) > head_limit:
                break
            head.append(line)
            used += len(line.message)
        head_closed = len(head) < self.next_seq
        tail: list[_Line] = []
        used = 0
        expected = self.next_seq - 1
        for line in reversed(known[len(head) :]):
            if line.seq != expected or used + len(line.message) > tail_limit:
                break
            tail.append(line)
            used += len(line.message)
            expected -= 1
        kept = head + tail[::-1]
        kept_bytes = sum(len(line.message) for line in kept)
        counts = OutputCounts(
            self.invocation_id,
            lines=self.next_seq,
            bytes=self.total_bytes,
            dropped_lines=self.next_seq - len(kept),
            dropped_bytes=self.total_bytes - kept_bytes,
            head_end=len(head) if head_closed else None,
            last_usec=self.last_usec,
        )
        stored = [
            StoredLine(
                self.invocation_id,
                line.seq,
                line.usec,
                PRIORITY[line.stream],
                line.message,
                line.stream,
            )
            for line in kept
        ]
        return CapturedOutput(stored, counts)

    # -- internals ---------------------------------------------------------------------

    def _extend_partial(self, stream: str, data: bytes) -> None:
        if not data:
            return
        partial = self._partial[stream]
        room = self.line_limit - len(partial)
        if room >= len(data):
            self._partial[stream] = partial + data
        else:
            self._partial[stream] = partial + data[: max(0, room)]
            self._partial_extra[stream] += len(data) - max(0, room)

    def _end_partial(self, stream: str, usec: int) -> None:
        message, extra = self._partial[stream], self._partial_extra[stream]
        self._partial[stream], self._partial_extra[stream] = b"", 0
        self.total_bytes += extra
        self.cut_bytes += extra
        self._add_line(_Line(self.next_seq, usec, stream, message), len(message))
        self.next_seq += 1

    def _add_block(self, stream: str, data: bytes, usec: int) -> None:
        lines = data.count(b"\n")
        if len(data) - lines > self.line_limit and max(map(len, data.split(b"\n"))) > (
            self.line_limit
        ):
            for part in data.split(b"\n")[:-1]:  # rare: over-long lines are cut one by one
                self._extend_partial(stream, part)
                self._end_partial(stream, usec)
            return
        block = _Block(self.next_seq, usec, stream, data, lines)
        self.next_seq += lines
        self.total_bytes += block.size
        self.last_usec = usec
        if not self.head_closed:
            in_head = 0
            for line in block.split():
                if not self._to_head(line):
                    break
                in_head += 1
            if in_head == lines:
                return
            remaining = data.split(b"\n", in_head)[-1]
            block = _Block(block.first_seq + in_head, usec, stream, remaining, lines - in_head)
        self._to_tail(block)

    def _add_line(self, line: _Line, size: int) -> None:
        self.total_bytes += size
        self.last_usec = line.usec
        if self.head_closed or not self._to_head(line):
            self._to_tail(_Block(line.seq, line.usec, line.stream, line.message + b"\n", 1))

    def _to_head(self, line: _Line) -> bool:
        if self.head_closed or self.head_bytes + len(line.message) > self.max_limit // 2:
            self.head_closed = True
            return False
        self.head.append(line)
        self.head_bytes += len(line.message)
        return True

    def _to_tail(self, block: _Block) -> None:
        self.tail.append(block)
        self.tail_bytes += block.size
        tail_limit = self.max_limit - self.max_limit // 2
        # A block whose successors alone exceed the tail's budget can never be kept.
        while len(self.tail) > 1 and self.tail_bytes - self.tail[0].size > tail_limit:
            self.tail_bytes -= self.tail.popleft().size
