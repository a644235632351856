"""One grammar of durations (options, configuration, jobs) and one way of showing them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.spans import human_duration, parse_seconds, parse_span

# How far a shown duration may be from the real one: less than one of its last digit.
_LAST_DIGIT = ((1, 0.001), (60, 0.1), (3600, 1.0), (86400, 60.0), (float("inf"), 3600.0))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # What --since took: whole numbers and s, m, h, d, w, parts together.
        ("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("2w", 1209600),
        ("1h30m", 5400),
        # What the configuration took as well: decimals, milliseconds, 0 alone.
        ("1.5h", 5400), ("250ms", 0.25), ("0", 0), ("  90s ", 90), ("1m500ms", 60.5),
        # What the jobs file's `every` took as well: space before the unit, any case.
        ("5 m", 300), ("2H", 7200), ("10 S", 10), ("1h 30m", 5400),
    ],
)  # fmt: skip
def test_it_reads_every_duration_that_options_configuration_or_jobs_took(
    text: str, seconds: float
) -> None:
    assert parse_span(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "-1d", "d", "1y", "1.5.h", "2 days", "1h-30m", "."])
def test_it_refuses_anything_else_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid duration {text!r}: use a number and a unit"):
        parse_span(text)


def _span_by_pattern(text: str) -> float | None:
    """The grammar as a regular expression with exact decimal sums: what parse_span read
    with re and decimal before it was written by hand (None: refused)."""
    part = r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)"
    if text.strip() == "0":
        return 0.0
    if not re.fullmatch(rf"(?:{part})+\s*", text, re.IGNORECASE):
        return None
    per = {"ms": "0.001", "s": "1", "m": "60", "h": "3600", "d": "86400", "w": "604800"}
    parts = re.findall(part, text, re.IGNORECASE)
    return float(sum(Decimal(n) * Decimal(per[unit.lower()]) for n, unit in parts))


# Digits (ASCII and others), the units in both cases, what may not be there, and spaces.
_SPAN_CHARACTERS = "0123456789\u0663.msMShHdDwWxy- \t\u2003"


_NUMBERS = st.from_regex(r"\A[0-9\u0663]{1,12}(\.[0-9]{1,6})?\Z")
_PARTS = st.tuples(
    st.sampled_from(["", " ", "\t"]), _NUMBERS, st.sampled_from(["", " "]),
    st.sampled_from(["ms", "Ms", "s", "S", "m", "M", "h", "H", "d", "w", "W"]),
).map("".join)  # fmt: skip


@given(
    st.one_of(
        st.text(alphabet=_SPAN_CHARACTERS, max_size=14),
        st.lists(_PARTS, min_size=1, max_size=4).map("".join),
    )
)
def test_it_reads_what_the_grammar_as_a_pattern_reads_and_refuses_the_rest(text: str) -> None:
    expected = _span_by_pattern(text)
    if expected is None:
        with pytest.raises(ValueError, match=r"invalid duration .*: use a number and a unit"):
            parse_span(text)
    else:
        assert parse_span(text) == expected


@pytest.mark.parametrize("text", ["9" * 400 + "w", "1" * 5000 + "s", "1." + "0" * 5000 + "1s"])
def test_a_duration_too_long_for_a_number_is_refused_as_too_long(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*: too long"):
        parse_span(text)


def test_a_configured_duration_is_seconds_or_a_span() -> None:
    assert parse_seconds(90) == 90.0
    assert parse_seconds(1.5) == 1.5
    assert parse_seconds("1.5h") == 5400.0
    assert parse_seconds("") == 0.0  # off
    for bad in ("2 days", "-5", -1, True, "1y", float("nan"), None):
        with pytest.raises(ValueError, match=rf"invalid duration {bad!r}: expected seconds"):
            parse_seconds(bad)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.35, "350ms"), (1.23, "1.2s"), (184, "3m04s"), (7500, "2h05m"), (273600, "3d04h"),
     (None, "-")],
)  # fmt: skip
def test_it_shows_a_duration_rounded_for_reading(seconds: float | None, shown: str) -> None:
    assert human_duration(seconds) == shown


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_a_shown_duration_reads_back_as_what_it_showed(seconds: float) -> None:
    shown = human_duration(seconds)
    read = parse_span(shown)
    assert human_duration(read) == shown
    last_digit = next(digit for limit, digit in _LAST_DIGIT if read < limit)
    assert abs(read - seconds) < last_digit
