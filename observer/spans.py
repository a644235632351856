"""Durations as people write them (``90s``, ``1.5h``, ``1h30m``) and as they read them
(``350ms``, ``1.2s``, ``3m04s``): one grammar for command-line options, the configuration and
the jobs file, and one way of showing a duration."""

from __future__ import annotations

import sys

# Each part: a number (a whole one or with decimals) and its unit, spaces allowed between
# them and between parts; units in any case ("every 5M" is five minutes).
_PART = r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)"
_SPAN = rf"(?:{_PART})+\s*"
# Exact (Decimal) sums of these, not float ones: 0.1h is 360 s.
_SECONDS_PER = {"ms": "0.001", "s": "1", "m": "60", "h": "3600", "d": "86400", "w": "604800"}
GRAMMAR = "a number and a unit (ms, s, m, h, d or w), like 90s, 1.5h or 1h30m"


def parse_span(text: str) -> float:
    """The seconds in ``30s``, ``15m``, ``1.5h``, ``7 d``, ``2w``, ``250ms``, ``1h30m``
    (or ``0``); ValueError naming ``text`` otherwise."""
    if text.strip() == "0":
        return 0.0
    # Imported here: a table that shows durations needs neither (re keeps the compiled patterns).
    import re  # noqa: PLC0415
    from decimal import Decimal  # noqa: PLC0415

    if not re.fullmatch(_SPAN, text, re.IGNORECASE):
        raise ValueError(f"invalid duration {text!r}: use {GRAMMAR}")
    parts = re.findall(_PART, text, re.IGNORECASE)
    seconds = float(sum(Decimal(n) * Decimal(_SECONDS_PER[unit.lower()]) for n, unit in parts))
    if seconds == float("inf"):
        raise ValueError(f"invalid duration {text!r}: too long")
    return seconds


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
