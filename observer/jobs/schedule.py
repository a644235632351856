"""Schedules as people write them, turned into a timer's settings (pure: no I/O).

Three forms: a systemd calendar expression (``daily``, ``Mon *-*-* 03:00``), passed on as
``OnCalendar=``; a five-field cron expression or nickname (``*/5 * * * *``, ``@daily``),
converted to one or two ``OnCalendar=`` lines that fire at the same times (cron's rule that
a restricted day of month OR a restricted day of week matches is two lines); and
``every 5m``, a calendar expression when the period divides the minute, hour or day, else
``OnActiveSec=`` + ``OnUnitActiveSec=`` (after each start).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from observer.run.schedule import NICKNAMES
from observer.spans import GRAMMAR, parse_span


class ScheduleError(ValueError):
    """A schedule that cannot be turned into timer settings."""


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """What one schedule puts in ``[Timer]``: calendar lines, or a period in seconds."""

    calendar: tuple[str, ...] = ()
    period_seconds: int | None = None  # OnActiveSec= + OnUnitActiveSec=
    on_boot: bool = False  # @reboot


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_SYSTEMD_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
# (first, last, names) of each cron field; day of week 7 is Sunday too.
_FIELDS = [(0, 59, []), (0, 23, []), (1, 31, []), (1, 12, _MONTHS), (0, 7, _DAYS)]
_FIELD_NAMES = ["minute", "hour", "day of month", "month", "day of week"]
_EVERY = re.compile(r"every\s+(.*)", re.IGNORECASE | re.DOTALL)
_CRON_CHARS = re.compile(r"[0-9A-Za-z*/,-]+")


def is_cron(text: str) -> bool:
    """Whether ``text`` is meant as a cron expression (five fields, or a nickname)."""
    text = text.strip()
    if text.lower() in NICKNAMES or text.lower() == "@reboot":
        return True
    fields = text.split()
    return len(fields) == 5 and all(_CRON_CHARS.fullmatch(f) for f in fields)


def timer_settings(text: str) -> TimerSettings:
    """The timer settings of one schedule; calendar expressions are checked by systemd later."""
    text = text.strip()
    if not text:
        raise ScheduleError("empty schedule")
    if any(ord(c) < 32 or c in "%\\;\"'" for c in text):
        raise ScheduleError("a schedule holds no control characters, %, \\, ; or quotes")
    if text.lower().startswith("every"):
        return every(text)
    if text.lower() == "@reboot":
        return TimerSettings(on_boot=True)
    if is_cron(text):
        return TimerSettings(calendar=cron_to_calendar(text))
    if text.startswith("@"):
        raise ScheduleError(
            f"unknown nickname {text!r} (known: @reboot, {', '.join(sorted(NICKNAMES))})"
        )
    return TimerSettings(calendar=(text,))


def every(text: str) -> TimerSettings:
    """``every 5m`` / ``every 2h`` / ``every 1.5h`` / ``every 10s`` / ``every 1d``."""
    match = _EVERY.fullmatch(text.strip())
    try:
        span = parse_span(match[1]) if match is not None else 0.0
    except ValueError:
        span = 0.0
    if span <= 0 or span != int(span):
        raise ScheduleError(
            f"invalid period {text!r}: write 'every' and a duration of whole seconds above 0 "
            f"({GRAMMAR}), e.g. 'every 5m', 'every 2h'"
        )
    seconds = int(span)
    if seconds < 60 and 60 % seconds == 0:
        return TimerSettings(calendar=(f"*-*-* *:*:00/{seconds}",))
    if seconds % 60 == 0 and seconds < 3600 and 3600 % seconds == 0:
        return TimerSettings(calendar=(f"*-*-* *:00/{seconds // 60}:00",))
    if seconds % 3600 == 0 and seconds < 86400 and 86400 % seconds == 0:
        return TimerSettings(calendar=(f"*-*-* 00/{seconds // 3600}:00:00",))
    if seconds == 86400:
        return TimerSettings(calendar=("*-*-* 00:00:00",))
    if seconds == 604800:
        return TimerSettings(calendar=("Mon *-*-* 00:00:00",))
    return TimerSettings(period_seconds=seconds)


def cron_to_calendar(text: str) -> tuple[str, ...]:
    """The OnCalendar= lines that fire exactly when the cron expression does."""
    expression = NICKNAMES.get(text.strip().lower(), text.strip())
    parts = expression.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"invalid cron expression {text!r}: give five fields (minute hour day month "
            "weekday), e.g. '*/5 * * * *', or @hourly, @daily, @weekly"
        )
    values = [_field(text, i, part) for i, part in enumerate(parts)]
    minute, hour, dom, month, dow = values
    dow = {d % 7 for d in dow}
    time = f"{_component(hour, 0, 23)}:{_component(minute, 0, 59)}:00"
    month_text = _component(month, 1, 12)
    dom_text = _component(dom, 1, 31)
    days = _weekdays(dow)
    dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
    if dom_star or dow_star:  # cron: day of month AND day of week
        prefix = f"{days} " if days else ""
        return (f"{prefix}*-{month_text}-{dom_text} {time}",)
    # Both restricted: cron runs on either (Vixie cron's rule, also cronsim's).
    return (f"*-{month_text}-{dom_text} {time}", f"{days or '*'} *-{month_text}-* {time}")


def _weekdays(dow: set[int]) -> str:
    if dow == set(range(7)):
        return ""
    return ",".join(_SYSTEMD_DAYS[d] for d in sorted(dow))


def _field(text: str, index: int, part: str) -> set[int]:
    first, last, _names = _FIELDS[index]
    result: set[int] = set()
    for item in part.lower().split(","):
        match = re.fullmatch(r"(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(\d+))?", item)
        if match is None:
            raise ScheduleError(
                f"invalid cron expression {text!r}: {_FIELD_NAMES[index]} {item!r} is not a "
                "number, a range (1-5), a list (1,3) or a step (*/5)"
            )
        span, step_text = match[1], match[2]
        if span == "*":
            low, high = first, last if index != 4 else 6
        elif "-" in span:
            low, high = (_number(text, index, p) for p in span.split("-"))
        else:
            low = _number(text, index, span)
            high = (last if index != 4 else 6) if step_text else low  # "5/10": from 5 on
        if low > high:
            raise ScheduleError(f"invalid cron expression {text!r}: range {span!r} goes backwards")
        step = int(step_text) if step_text else 1
        if step == 0:
            raise ScheduleError(f"invalid cron expression {text!r}: a step of 0")
        result.update(range(low, high + 1, step))
    return result


def _number(text: str, index: int, word: str) -> int:
    first, last, names = _FIELDS[index]
    if word in names:
        return names.index(word) + (1 if index == 3 else 0)
    if not word.isdecimal() or not first <= int(word) <= last:
        raise ScheduleError(
            f"invalid cron expression {text!r}: {_FIELD_NAMES[index]} {word!r} is outside "
            f"{first}-{last}"
        )
    return int(word)


def _component(values: set[int], first: int, last: int) -> str:
    """A set of values as systemd writes them: ``*``, ``0/5``, ``1..5``, a list."""
    ordered = sorted(values)
    if ordered == list(range(first, last + 1)):
        return "*"
    width = 2
    if len(ordered) > 2:
        step = ordered[1] - ordered[0]
        if step > 1 and ordered == list(range(ordered[0], last + 1, step)):
            return f"{ordered[0]:0{width}d}/{step}"
    pieces = []
    start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        if previous - start >= 2:
            pieces.append(f"{start:0{width}d}..{previous:0{width}d}")
        else:
            pieces.extend(f"{v:0{width}d}" for v in range(start, previous + 1))
        if value is not None:
            start = previous = value
    return ",".join(pieces)
