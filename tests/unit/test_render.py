"""How times, rates and durations look in tables, pages and alerts: one function each."""

from __future__ import annotations

import os
import time

import pytest

from observer.reading.render import clock_time, percent, table_time

NOON = 1_795_435_200_000_000  # 2026-11-23 12:00:00 UTC


@pytest.mark.usefixtures("utc")
def test_a_table_time_is_local_to_the_second() -> None:
    assert table_time(NOON + 999_999) == "2026-11-23 12:00:00"
    assert table_time(None) == "-"


@pytest.mark.usefixtures("utc")
def test_an_output_lines_time_is_the_time_of_day_to_the_millisecond() -> None:
    assert clock_time(NOON + 61_234_567) == "12:01:01.234"


@pytest.mark.usefixtures("utc")
def test_a_cached_second_follows_a_change_of_time_zone() -> None:
    assert table_time(NOON) == "2026-11-23 12:00:00"
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    assert table_time(NOON) == "2026-11-23 17:30:00"


def test_a_rate_is_a_percentage_to_a_tenth() -> None:
    assert percent(0.975) == "97.5%"
    assert percent(1.0) == "100.0%"
    assert percent(None) == "-"
