"""When a wrapped job should run next: a cron expression (``--schedule``) or a period (``--every``).

Cron expressions are evaluated by cronsim in the local time zone (``$TZ``, else
/etc/localtime), the way cron reads a crontab, daylight saving changes included.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, tzinfo

# The nicknames cron accepts in place of the five fields (@reboot is no schedule).
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(ValueError):
    """A cron expression or a period that cannot be used."""


class Schedule:
    """How often a job runs: a cron expression or a fixed period after each start (a plain
    class: a dataclass would cost every cron job half a millisecond to create)."""

    __slots__ = ("cron", "every")

    def __init__(self, cron: str | None = None, every: timedelta | None = None) -> None:
        self.cron = cron
        self.every = every

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and (self.cron, self.every) == (other.cron, other.every)

    def __hash__(self) -> int:
        return hash((self.cron, self.every))

    def __repr__(self) -> str:
        return f"Schedule(cron={self.cron!r}, every={self.every!r})"

    def next_after(self, start_usec: int, zone: tzinfo | None = None) -> int:
        """When the next run is due, in microseconds since the epoch."""
        if self.every is not None:
            return start_usec + self.every // timedelta(microseconds=1)
        if self.cron is None:
            raise ScheduleError("a schedule needs a cron expression or a period")
        from cronsim import CronSim  # noqa: PLC0415 (only jobs with --schedule pay for it)

        start = datetime.fromtimestamp(start_usec / 1e6, zone or local_zone())
        return int(next(CronSim(self.cron, start)).timestamp() * 1e6)

    def describe(self) -> str:
        return self.cron if self.cron is not None else f"every {self.every}"


def parse_cron(text: str) -> Schedule:
    """A five-field cron expression (or a nickname such as ``@daily``), checked by cronsim."""
    expression = NICKNAMES.get(text.strip().lower(), text.strip())
    if len(expression.split()) != 5:
        raise ScheduleError(
            f"invalid cron expression {text!r}: give five fields (minute hour day month "
            "weekday) as in a crontab, e.g. '*/5 * * * *', or @hourly, @daily, @weekly"
        )
    try:
        from cronsim import CronSim, CronSimError  # noqa: PLC0415
    except ImportError:  # a broken install must not keep the job from running
        return Schedule(cron=expression)
    try:
        CronSim(expression, datetime.now(local_zone()))
    except CronSimError as e:
        raise ScheduleError(f"invalid cron expression {text!r}: {e}") from None
    return Schedule(cron=expression)


def local_zone() -> tzinfo:
    """The time zone cron uses: ``$TZ`` if set, else /etc/localtime, else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

    name = os.environ.get("TZ", "").removeprefix(":")
    try:
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f)
    except (OSError, ValueError, ZoneInfoNotFoundError):
        from datetime import UTC  # noqa: PLC0415

        return UTC
