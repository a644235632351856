"""Durations as people write them (``90s``, ``1.5h``, ``1h30m``) and as they read them
(``350ms``, ``1.2s``, ``3m04s``): one grammar for command-line options, the configuration and
the jobs file, and one way of showing a duration."""

from __future__ import annotations

import sys

# Each part: a number (a whole one or with decimals) and its unit, spaces allowed between
# them and between parts; units in any case ("every 5M" is five minutes). The milliseconds
# in each unit: the parts are summed exactly, as integers (0.1h is 360 s).
_MILLISECONDS_PER = {
    "ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
}  # fmt: skip
GRAMMAR = "a number and a unit (ms, s, m, h, d or w), like 90s, 1.5h or 1h30m"
# More digits than any duration needs (and fewer than int() reads from a text).
_MOST_DIGITS = 4000


def parse_span(text: str) -> float:
    """The seconds in ``30s``, ``15m``, ``1.5h``, ``7 d``, ``2w``, ``250ms``, ``1h30m``
    (or ``0``); ValueError naming ``text`` otherwise.

    Read by hand, not with re and decimal: those two are 3 ms of a command's start.
    """
    if text.strip() == "0":
        return 0.0
    parts = _span_parts(text)
    if not parts:
        raise ValueError(f"invalid duration {text!r}: use {GRAMMAR}")
    # Each part as an integer of 1/10**width milliseconds, then one correctly rounded division.
    width = max(len(decimals) for _, decimals, _ in parts)
    if max(len(whole) for whole, _, _ in parts) + width > _MOST_DIGITS:
        raise ValueError(f"invalid duration {text!r}: too long")
    scaled = sum(
        int(whole + decimals.ljust(width, "0")) * _MILLISECONDS_PER[unit]
        for whole, decimals, unit in parts
    )
    denominator: int = 10**width * 1000  # from 1/10**width milliseconds to seconds
    try:
        return scaled / denominator  # an int's true division is finite or raises
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None


def _span_parts(text: str) -> list[tuple[str, str, str]] | None:
    """Each part of ``text`` as (whole digits, decimal digits, unit); None if a part is not
    a number and a unit, or there is something else."""
    parts: list[tuple[str, str, str]] = []
    at = _after_spaces(text, 0)
    while at < len(text):
        whole, at = _digits(text, at)
        decimals = ""
        if whole and text.startswith(".", at):
            decimals, at = _digits(text, at + 1)
            if not decimals:
                return None
        at = _after_spaces(text, at)
        unit = text[at : at + 2].lower()
        if unit != "ms":
            unit = unit[:1]
        if not whole or unit not in _MILLISECONDS_PER:
            return None
        parts.append((whole, decimals, unit))
        at = _after_spaces(text, at + len(unit))
    return parts


def _digits(text: str, at: int) -> tuple[str, int]:
    end = at
    while end < len(text) and text[end].isdecimal():
        end += 1
    return text[at:end], end


def _after_spaces(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def parse_seconds(value: object) -> float:
    """A duration in a TOML file: seconds (a number >= 0) or text ``parse_span`` reads; an
    empty text is 0 (off)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= sys.float_info.max:  # also refuses NaN and what no float holds
            raise ValueError(f"invalid duration {value!r}: expected seconds >= 0")
        return float(value)
    if isinstance(value, str):
        if not value.strip():
            return 0.0
        try:
            return parse_span(value)
        except ValueError:
            pass
    raise ValueError(f"invalid duration {value!r}: expected seconds (a number) or {GRAMMAR}")


def human_duration(seconds: float | None) -> str:
    """A duration people read at a glance: 350ms, 1.2s, 3m04s, 2h05m, 3d04h (``parse_span``
    reads each back)."""
    if seconds is None:
        return "-"
    if (millis := round(seconds * 1000)) < 1000:
        return f"{millis}ms"
    if (tenths := round(seconds, 1)) < 60:
        return f"{tenths:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
