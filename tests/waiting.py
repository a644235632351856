"""Waiting in tests for something to happen: polled against a deadline, never slept out.

A wait that runs out fails with what it waited for and the last value it saw, so a slow
machine gives a message rather than a hang, and a fast one never waits longer than needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotInTime(AssertionError):
    """What a test waited for did not happen before its deadline."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        shown = repr(last)
        shown = shown if len(shown) <= 500 else f"{shown[:500]}..."
        super().__init__(f"timed out after {timeout:g} s waiting for {what}; last seen: {shown}")


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    every: float = 0.05,
    check: Callable[[], object] | None = None,
) -> T:
    """Call ``condition`` until it returns something true, and return that.

    ``check`` runs before each call and ends the wait by raising (a daemon that died);
    so does ``condition`` itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise NotInTime(what, timeout, value)
        time.sleep(every)


async def wait_for_async(
    condition: Callable[[], T | None],
    *,
    timeout: float,  # noqa: ASYNC109 (a deadline whose message names what it waited for)
    what: str,
    every: float = 0.05,
) -> T:
    """``wait_for`` on an event loop: the services under test run while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise NotInTime(what, timeout, value)
        await asyncio.sleep(every)


def settled(
    fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float, every: float = 0.5
) -> T:
    """Fetch until ``done`` holds of the value or time is up; return the last value fetched.

    For a value the asserts that follow compare in full: when it never got done, they show
    what is missing or extra, where a timeout would only say that it did not.
    """
    deadline = time.monotonic() + timeout
    while not done(value := fetch()) and time.monotonic() < deadline:
        time.sleep(every)
    return value
