"""Keeping the start and the end of a run's output under a byte budget, and showing it safely."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from observer.output import OutputBudget, cut_line, printable


def admit_all(budget: OutputBudget, sizes: list[int]) -> set[int]:
    kept: set[int] = set()
    for size in sizes:
        seq, dropped = budget.admit(size)
        kept.add(seq)
        kept.difference_update(dropped)
    return kept


def test_it_keeps_everything_that_fits() -> None:
    budget = OutputBudget(limit=100)

    assert admit_all(budget, [10] * 10) == set(range(10))
    assert budget.dropped_lines == 0


def test_it_keeps_the_first_and_the_last_lines_and_drops_the_middle() -> None:
    budget = OutputBudget(limit=100)

    kept = admit_all(budget, [10] * 100)

    assert kept == set(range(5)) | set(range(95, 100))
    assert (budget.dropped_lines, budget.dropped_bytes) == (90, 900)
    assert budget.head_end == 5


def test_shrinking_after_success_keeps_less_of_both_ends() -> None:
    budget = OutputBudget(limit=100)
    kept = admit_all(budget, [10] * 100)

    kept.difference_update(budget.shrink(40))

    assert kept == {0, 1, 98, 99}
    assert budget.dropped_lines == 96


def test_shrinking_output_that_fitted_whole_keeps_its_end_too() -> None:
    budget = OutputBudget(limit=1000)
    kept = admit_all(budget, [10] * 10)

    kept.difference_update(budget.shrink(40))
    assert kept == {0, 1, 8, 9}
    assert budget.dropped_lines == 6

    seq, dropped = budget.admit(10)
    kept.add(seq)
    kept.difference_update(dropped)
    assert kept == {0, 1, 9, 10}


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=120),
    first=st.integers(min_value=2, max_value=400),
    second=st.integers(min_value=2, max_value=400),
)
# A zero-byte line ends the head and a line is dropped after it: the new tail must not
# reach back over that drop.
@example(sizes=[1, 21, 21, 0, 2, 21, 21], first=84, second=86)
def test_after_shrinking_what_is_kept_is_still_a_start_and_an_end_within_budget(
    sizes: list[int], first: int, second: int
) -> None:
    budget = OutputBudget(limit=max(first, second))
    sizes = [min(s, min(first, second) // 4 or 1) for s in sizes]
    kept = admit_all(budget, sizes)
    kept.difference_update(budget.shrink(min(first, second)))

    assert sum(sizes[seq] for seq in kept) <= budget.limit
    assert sum(sizes[seq] for seq in kept) + budget.dropped_bytes == sum(sizes)
    ordered = sorted(kept)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b - a > 1]
    assert len(gaps) <= 1
    if ordered:
        assert ordered[0] == 0 or budget.head == []
        assert ordered[-1] == len(sizes) - 1 or budget.tail_bytes == 0


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=200),
    limit=st.integers(min_value=2, max_value=400),
)
def test_it_never_keeps_more_than_its_budget_and_counts_every_dropped_byte(
    sizes: list[int], limit: int
) -> None:
    budget = OutputBudget(limit=limit)
    sizes = [min(s, budget.line_limit) for s in sizes]
    kept = admit_all(budget, sizes)

    kept_bytes = sum(sizes[seq] for seq in kept)
    assert kept_bytes <= limit
    assert kept_bytes + budget.dropped_bytes == sum(sizes)
    assert len(kept) + budget.dropped_lines == len(sizes)
    # What is kept is a prefix and a suffix of the output.
    head = [seq for seq in sorted(kept) if budget.head_end is None or seq < budget.head_end]
    assert head == list(range(len(head)))
    tail = sorted(kept - set(head))
    assert tail == list(range(len(sizes) - len(tail), len(sizes)))


@given(
    before=st.lists(st.integers(min_value=0, max_value=30), max_size=60),
    after=st.lists(st.integers(min_value=0, max_value=30), max_size=60),
)
def test_a_restored_budget_continues_exactly_where_the_first_one_stopped(
    before: list[int], after: list[int]
) -> None:
    first, second = OutputBudget(limit=200), OutputBudget(limit=200)
    kept = admit_all(first, before)
    restored = OutputBudget.restore(
        200,
        [(seq, before[seq]) for seq in kept],
        first.head_end,
        (first.lines, first.bytes, first.dropped_lines, first.dropped_bytes),
    )
    admit_all(second, before)

    assert admit_all(restored, after) == admit_all(second, after)
    assert restored.dropped_bytes == second.dropped_bytes


def test_an_over_long_line_is_cut_and_the_cut_is_counted() -> None:
    assert cut_line(b"x" * 10, 4) == (b"xxxx", 6)
    assert cut_line(b"short", 10) == (b"short", 0)


def test_invalid_utf8_and_escape_codes_are_shown_visibly() -> None:
    shown = printable(b"\xff\xfe bad \x1b[31mred\x00\ttab")

    assert shown == "\\xff\\xfe bad \\x1b[31mred\\x00\ttab"
    assert printable("grüße".encode()) == "grüße"
