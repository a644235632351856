"""How times, rates and durations look in tables, pages and alerts: one function each."""

from __future__ import annotations

import os
import time

import pytest

from observer.reading.render import clock_time, local_time, percent, table_time

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


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_a_table_time_is_the_local_time_a_datetime_reads(zone: str) -> None:
    """Across a year (both changes of summer time) and the epoch's neighbourhood."""
    os.environ["TZ"] = zone
    time.tzset()
    seconds = [NOON // 1_000_000 + n * 3_607 for n in range(-4_500, 4_500)]
    seconds += [0, 1, 59, 86_399, 2**31 - 1, 2**31 + 7]
    for second in seconds:
        usec = second * 1_000_000
        moment = local_time(usec)
        assert table_time(usec) == moment.strftime("%Y-%m-%d %H:%M:%S")
        assert clock_time(usec) == moment.strftime("%H:%M:%S.000")


def test_a_rate_is_a_percentage_to_a_tenth() -> None:
    assert percent(0.975) == "97.5%"
    assert percent(1.0) == "100.0%"
    assert percent(None) == "-"
