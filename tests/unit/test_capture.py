"""What `observer run` keeps of a job's output is what the daemon's OutputBudget keeps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from observer.output import OutputBudget, cut_line
from observer.run.capture import PRIORITY, STDERR, STDOUT, OutputCapture

INVOCATION = "0" * 32


def budget_keeps(lines: list[bytes], limit: int) -> tuple[list[tuple[int, bytes]], OutputBudget]:
    """Admit lines one by one, as the daemon does, with a budget of ``limit``."""
    budget = OutputBudget(limit=limit)
    kept: dict[int, bytes] = {}
    for line in lines:
        message, cut = cut_line(line, budget.line_limit)
        seq, dropped = budget.admit(len(message))
        budget.bytes += cut
        budget.dropped_bytes += cut
        kept[seq] = message
        for seq in dropped:
            del kept[seq]
    return sorted(kept.items()), budget


def feed_in_chunks(capture: OutputCapture, data: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in sorted(set(cuts)):
        capture.feed(STDOUT, data[start:cut], 1)
        start = cut
    capture.feed(STDOUT, data[start:], 1)
    capture.close(2)


@st.composite
def outputs(draw: st.DrawFn, short: bool = False) -> tuple[int, list[bytes], list[int]]:
    """A budget, lines (short: none the budget would cut), and where reads split the bytes."""
    limit = draw(st.integers(min_value=8, max_value=400))
    line = st.binary(max_size=limit // 4 if short else limit * 2)
    lines = draw(st.lists(line.map(lambda b: b.replace(b"\n", b"")), max_size=80))
    cuts = draw(st.lists(st.integers(min_value=0, max_value=sum(len(x) + 1 for x in lines))))
    return limit, lines, cuts


def assert_same_as_budget(capture: OutputCapture, final: int, lines: list[bytes]) -> None:
    result = capture.finish(final)
    expected, budget = budget_keeps(lines, final)
    assert [(ln.seq, ln.message) for ln in result.lines] == expected
    counts = result.counts
    assert (counts.lines, counts.bytes) == (budget.lines, budget.bytes)
    assert (counts.dropped_lines, counts.dropped_bytes) == (
        budget.dropped_lines,
        budget.dropped_bytes,
    )
    assert counts.head_end == budget.head_end


@settings(max_examples=300, deadline=None)
@given(outputs())
def test_a_failed_run_keeps_exactly_what_the_daemons_budget_keeps(
    output: tuple[int, list[bytes], list[int]],
) -> None:
    limit, lines, cuts = output
    capture = OutputCapture(INVOCATION, limit)
    feed_in_chunks(capture, b"".join(line + b"\n" for line in lines), cuts)

    assert_same_as_budget(capture, limit, lines)


@settings(max_examples=300, deadline=None)
@given(outputs(short=True))
def test_a_successful_run_keeps_what_a_budget_of_the_smaller_limit_keeps(
    output: tuple[int, list[bytes], list[int]],
) -> None:
    limit, lines, cuts = output
    capture = OutputCapture(INVOCATION, limit * 16)  # the failed runs' budget while it runs
    feed_in_chunks(capture, b"".join(line + b"\n" for line in lines), cuts)

    assert_same_as_budget(capture, limit, lines)


def test_it_keeps_the_start_and_the_end_of_a_long_output() -> None:
    capture = OutputCapture(INVOCATION, 1000)
    for i in range(10_000):
        capture.feed(STDOUT, f"line {i:05d}\n".encode(), i)
    capture.close(10_000)
    result = capture.finish(1000)

    messages = [ln.message for ln in result.lines]
    assert messages[0] == b"line 00000"
    assert messages[-1] == b"line 09999"
    assert result.counts.lines == 10_000
    assert result.counts.bytes == 100_000
    assert sum(len(m) for m in messages) <= 1000
    assert result.counts.dropped_lines == 10_000 - len(messages)
    assert result.counts.head_end == 50


def test_a_successful_run_keeps_its_end_even_when_all_of_it_fit_the_larger_budget() -> None:
    capture = OutputCapture(INVOCATION, 4000)
    capture.feed(STDOUT, b"".join(b"%03d\n" % i for i in range(300)), 1)
    capture.close(2)
    result = capture.finish(400)

    messages = [ln.message for ln in result.lines]
    assert messages[:2] == [b"000", b"001"]
    assert messages[-1] == b"299"
    assert result.counts.dropped_lines == 300 - len(messages) > 0


def test_it_keeps_which_stream_each_line_came_from_and_orders_lines_as_they_ended() -> None:
    capture = OutputCapture(INVOCATION, 10_000)
    capture.feed(STDOUT, b"out 1\nout ", 1)
    capture.feed(STDERR, b"err 1\n", 2)
    capture.feed(STDOUT, b"2\n", 3)
    capture.feed(STDERR, b"no newline at the end", 4)
    capture.close(5)
    result = capture.finish(10_000)

    assert [(ln.seq, ln.stream, ln.priority, ln.message) for ln in result.lines] == [
        (0, STDOUT, PRIORITY[STDOUT], b"out 1"),
        (1, STDERR, PRIORITY[STDERR], b"err 1"),
        (2, STDOUT, PRIORITY[STDOUT], b"out 2"),
        (3, STDERR, PRIORITY[STDERR], b"no newline at the end"),
    ]
    assert result.counts.head_end is None
    assert result.counts.last_usec == 5


def test_an_endless_line_is_cut_and_counted_without_being_held_in_memory() -> None:
    capture = OutputCapture(INVOCATION, 400)
    for _ in range(1000):
        capture.feed(STDOUT, b"x" * 1000, 1)
    capture.feed(STDOUT, b"\nshort\n", 2)
    capture.close(3)
    result = capture.finish(400)

    assert len(capture.head) <= 2
    [long, short] = result.lines
    assert long.message == b"x" * 100
    assert short.message == b"short"
    assert result.counts.bytes == 1_000_000 + 5
    assert result.counts.dropped_bytes == 1_000_000 - 100


def test_binary_output_is_kept_byte_for_byte() -> None:
    data = bytes(range(256)).replace(b"\n", b"") * 3
    capture = OutputCapture(INVOCATION, 100_000)
    capture.feed(STDOUT, data + b"\n", 1)
    capture.close(2)

    assert capture.finish(100_000).lines[0].message == data
