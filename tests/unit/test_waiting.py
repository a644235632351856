"""The tests' one way of waiting: it returns what it waited for, or says what never came."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from tests.waiting import NotInTime, settled, wait_for, wait_for_async


def test_it_returns_the_first_true_value_of_the_condition() -> None:
    counts = itertools.count()

    assert wait_for(lambda: [n] if (n := next(counts)) >= 3 else [], timeout=10, what="3") == [3]


def test_it_times_out_naming_what_it_waited_for_and_the_last_value_seen() -> None:
    counts = itertools.count()

    with pytest.raises(NotInTime) as raised:
        wait_for(
            lambda: [] if next(counts) < 3 else None, timeout=0.2, what="backup's run", every=0.01
        )
    assert "waiting for backup's run; last seen: None" in str(raised.value)
    assert isinstance(raised.value, AssertionError)


def test_its_message_shows_the_last_value_the_condition_returned() -> None:
    seen: Iterator[dict[str, int] | list[int] | None] = iter([None, [], {}])

    with pytest.raises(
        NotInTime, match=r"timed out after 0.05 s waiting for rows; last seen: \{\}"
    ):
        wait_for(lambda: next(seen, {}), timeout=0.05, what="rows", every=0.03)


def test_a_check_that_raises_ends_the_wait_at_once() -> None:
    def died() -> None:
        raise RuntimeError("the daemon exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_for(lambda: None, timeout=60, what="a run", check=died)


def test_the_async_wait_lets_the_loop_run_and_returns_the_value() -> None:
    async def scenario() -> str:
        done: list[str] = []
        asyncio.get_running_loop().call_later(0.05, done.append, "written")
        return await wait_for_async(lambda: done[0] if done else None, timeout=10, what="the write")

    assert asyncio.run(scenario()) == "written"


def test_the_async_wait_times_out_with_the_same_message() -> None:
    with pytest.raises(NotInTime, match="waiting for the first write; last seen: 0"):
        asyncio.run(wait_for_async(lambda: 0, timeout=0.05, what="the first write"))


def test_settled_returns_the_value_once_done_holds_and_the_last_value_when_it_never_does() -> None:
    counts = itertools.count()

    assert settled(lambda: next(counts), lambda n: n >= 2, timeout=10, every=0.01) == 2
    assert settled(lambda: 7, lambda n: n > 7, timeout=0.05, every=0.01) == 7
