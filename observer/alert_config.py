"""The [alerts] section of observer.toml: rules, channels, per-unit overrides, heartbeat.

Shared at the top: the configuration reads it, the jobs read their ``[jobs.NAME.alerts]``
tables with it, and the alerts apply it. The syntax of its values (metric checks, the
digest's time of day) is parsed here, where every reader finds it.

Durations are seconds (a number) or text like ``"90s"``, ``"1.5h"``, ``"1h30m"`` (spans.py);
0 turns a rule off. Per-unit tables, ``[alerts.units."backup.service"]`` (or a glob such
as ``"backup@*.service"``), override any rule and may name their own channels.
"""

from __future__ import annotations

import fnmatch
import math
import re
import sys
from datetime import time

from observer.model import ConfigError
from observer.records import NamedTuple

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

MAX_WHOLE = 2**63 - 1  # SQLite's largest integer: every count is stored or compared there
_METRIC_CHECK = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class AlertRules(NamedTuple):
    """What counts as a problem for one unit (durations in seconds; 0 turns a rule off)."""

    enabled: bool = True
    failures: int = 2  # failed runs in a row that make one alert
    reminder_interval: float = 0.0  # repeat the alert this often while the problem lasts
    missed_grace: float = 300.0  # a timer fired (or was due) this long ago and nothing ran
    stale_after: float = 0.0  # no successful run for this long
    max_duration: float = 0.0  # a run took (or is taking) longer than this
    min_duration: float = 0.0  # a successful run took less than this (it did nothing?)
    slow_factor: float = 3.0  # a run took this many times the p95 of recent successes
    slow_min_runs: int = 10  # successes needed before the p95 means anything
    slow_window: int = 20  # how many recent successes make the p95
    # Findings: what is wrong with a run that systemd may call a success (findings.py).
    fail_output: str = ""  # a regex: a line of output matching it is wrong
    expect_output: str = ""  # a regex: a successful run prints a line matching it
    fast_factor: float = 0.1  # a success under this many times the p5 of recent successes
    output_factor: float = 10.0  # a success printing this many times fewer (or more) lines
    output_min_runs: int = 10  # successes needed before "usual output" means anything
    metric_checks: tuple[str, ...] = ()  # "job_backup_size_bytes > 1e9": of $JOB_METRICS_FILE
    trend_factor: float = 1.5  # the last 7 days' median duration against the 30 days before
    findings_fail: bool = True  # a run with findings counts as a failed run
    failure_rate: float = 0.0  # alert when this share of the runs in rate_window failed
    rate_window: float = 86400.0
    rate_min_runs: int = 5  # runs in the window before a rate means anything


class ChannelSources(NamedTuple):
    """Where notification URLs come from; they are read when the daemon starts."""

    urls: tuple[str, ...] = ()  # may hold tokens: left out of the repr
    credential: str = ""  # a file in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=)
    file: str = ""  # a file only its owner may read

    def __bool__(self) -> bool:
        return bool(self.urls or self.credential or self.file)

    def __repr__(self) -> str:
        return f"ChannelSources(credential={self.credential!r}, file={self.file!r})"


class UnitAlerts(NamedTuple):
    """The rules (and perhaps channels) of the units whose name matches ``pattern``."""

    pattern: str
    rules: AlertRules
    channels: ChannelSources  # empty: the global channels


class AlertsConfig(NamedTuple):
    """Everything under [alerts]; ``present`` is False when the section is missing."""

    present: bool = False
    rules: AlertRules = AlertRules()
    channels: ChannelSources = ChannelSources()
    units: tuple[UnitAlerts, ...] = ()
    heartbeat: ChannelSources = ChannelSources()
    heartbeat_interval: float = 60.0
    check_interval: float = 30.0
    send_timeout: float = 30.0
    retry_delay: float = 30.0  # before the second attempt; doubles after each failure
    max_attempts: int = 5
    output_lines: int = 20
    digest_at: str = ""  # "08:00": the daily digest to the global channels (local time)

    def unit_table(self, unit: str) -> UnitAlerts | None:
        """The first [alerts.units] table naming ``unit``: exact names first, then globs."""
        for entry in self.units:
            if entry.pattern == unit:
                return entry
        for entry in self.units:
            if fnmatch.fnmatchcase(unit, entry.pattern):
                return entry
        return None

    def rules_for(self, unit: str) -> AlertRules:
        """The rules of the unit's [alerts.units] table, else those of [alerts]."""
        entry = self.unit_table(unit)
        return self.rules if entry is None else entry.rules

    def channels_for(self, unit: str) -> ChannelSources:
        """A unit's own channels if its table names some, else the global ones."""
        entry = self.unit_table(unit)
        return entry.channels if entry is not None and entry.channels else self.channels

    @classmethod
    def from_table(cls, path: Path, name: str, table: object) -> AlertsConfig:
        """Read the [alerts] table; errors name the file, the key and the bad value."""
        table = _table(path, name, table)
        rules = _rules(path, name, table, AlertRules())
        channels = _channels(path, name, table)
        units = []
        raw_units = _table(path, f"{name}.units", table.get("units", {}))
        for pattern, raw in raw_units.items():
            where = f'{name}.units."{pattern}"'
            units.append(unit_alerts(path, where, pattern, raw, rules))
        _reject_unknown(path, name, table, _GLOBAL_KEYS)
        settings: dict[str, Any] = {}
        for key in ("heartbeat_interval", "check_interval", "send_timeout", "retry_delay"):
            if key in table:
                settings[key] = _seconds(path, f"{name}.{key}", table[key], positive=True)
        for key in ("max_attempts", "output_lines"):
            if key in table:
                settings[key] = _whole(path, f"{name}.{key}", table[key], minimum=1)
        if table.get("digest_at"):
            settings["digest_at"] = _clock(path, f"{name}.digest_at", table["digest_at"])
        heartbeat = ChannelSources(
            urls=(_text(path, f"{name}.heartbeat_url", table["heartbeat_url"]),)
            if table.get("heartbeat_url")
            else (),
            credential=_text(path, f"{name}.heartbeat_url_credential",
                             table.get("heartbeat_url_credential", "")),
            file=_text(path, f"{name}.heartbeat_url_file", table.get("heartbeat_url_file", "")),
        )  # fmt: skip
        return cls(
            present=True,
            rules=rules,
            channels=channels,
            units=tuple(units),
            heartbeat=heartbeat,
            **settings,
        )


_RULE_KEYS = set(AlertRules._fields)
_CHANNEL_KEYS = {"urls", "urls_credential", "urls_file"}
UNIT_KEYS = _RULE_KEYS | _CHANNEL_KEYS
_GLOBAL_KEYS = UNIT_KEYS | {
    "units", "heartbeat_url", "heartbeat_url_credential", "heartbeat_url_file",
    "heartbeat_interval", "check_interval", "send_timeout", "retry_delay", "max_attempts",
    "output_lines", "digest_at",
}  # fmt: skip
_FACTORS = {"slow_factor", "fast_factor", "output_factor", "trend_factor", "failure_rate"}
_AT_LEAST_ONE = {"slow_min_runs", "slow_window", "output_min_runs", "rate_min_runs"}
_REGEXES = {"fail_output", "expect_output"}


def unit_alerts(
    path: Path, where: str, pattern: str, table: object, base: AlertRules
) -> UnitAlerts:
    """One per-unit table (``[alerts.units."X"]``, or a job's ``[jobs.NAME.alerts]``)."""
    unit_table = _table(path, where, table)
    _reject_unknown(path, where, unit_table, UNIT_KEYS)
    rules = _rules(path, where, unit_table, base)
    return UnitAlerts(pattern, rules, _channels(path, where, unit_table))


def parse_metric_check(text: str) -> tuple[str, str, float]:
    """``"job_backup_size_bytes > 1e9"`` as (name, operator, bound)."""
    match = _METRIC_CHECK.fullmatch(text)
    if match is None:
        raise ValueError('expected "METRIC OP NUMBER" with OP one of > >= < <= == !=')
    try:
        bound = float(match[3])
    except ValueError:
        raise ValueError(f"{match[3]!r} is not a number") from None
    if math.isnan(bound):
        raise ValueError("the bound cannot be NaN")
    return match[1], match[2], bound


def parse_clock(text: str) -> time:
    """``"08:00"`` as a time of day."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError('expected a time of day like "08:00" (24-hour, HH:MM)')
    return time(int(match[1]), int(match[2]))


def _table(path: Path, where: str, value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    return value


def _reject_unknown(path: Path, where: str, table: dict[str, object], known: set[str]) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown key {where}.{key} (known: {', '.join(sorted(known))})"
            )


def _seconds(path: Path, key: str, value: object, *, positive: bool = False) -> float:
    # Imported here: `observer run` reads this file's sections without durations in them.
    from observer.spans import parse_seconds  # noqa: PLC0415

    try:
        seconds = parse_seconds(value)
    except ValueError as e:
        raise ConfigError(f"{path}: {key} = {value!r}: {e}") from None
    if positive and seconds <= 0:
        raise ConfigError(f"{path}: {key} = {value!r}: expected a duration above 0")
    return seconds


def _whole(path: Path, key: str, value: object, *, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{path}: {key} = {value!r}: expected a whole number >= {minimum}")
    if value > MAX_WHOLE:
        raise ConfigError(f"{path}: {key} = {value!r}: too large (at most {MAX_WHOLE})")
    return value


def _text(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key} = {value!r}: expected a string")
    return value


def _clock(path: Path, key: str, value: object) -> str:
    text = _text(path, key, value)
    try:
        parse_clock(text)
    except ValueError as e:
        raise ConfigError(f"{path}: {key} = {value!r}: {e}") from None
    return text.strip()


def _regex(path: Path, key: str, value: object) -> str:
    text = _text(path, key, value)
    try:
        re.compile(text)
    except re.error as e:
        raise ConfigError(f"{path}: {key} = {value!r}: not a regular expression: {e}") from None
    return text


def _metric_checks(path: Path, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{path}: {key}: expected a list like ["job_backup_size_bytes > 1e9"]')
    for check in value:
        try:
            parse_metric_check(check)
        except ValueError as e:
            raise ConfigError(f"{path}: {key}: {check!r}: {e}") from None
    return tuple(value)


def _rules(path: Path, where: str, table: dict[str, object], base: AlertRules) -> AlertRules:
    values: dict[str, Any] = {}
    for key in _RULE_KEYS & table.keys():
        value, name = table[key], f"{where}.{key}"
        default = getattr(base, key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: {name} = {value!r}: expected true or false")
            values[key] = value
        elif isinstance(default, int):
            values[key] = _whole(path, name, value, minimum=1 if key in _AT_LEAST_ONE else 0)
        elif key in _FACTORS:
            top = 1 if key == "failure_rate" else float("inf")
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not (0 <= value <= top)
                or value > sys.float_info.max  # a whole number no float holds
            ):
                within = "between 0 and 1" if top == 1 else ">= 0"
                raise ConfigError(f"{path}: {name} = {value!r}: expected a number {within}")
            values[key] = float(value)
        elif key in _REGEXES:
            values[key] = _regex(path, name, value)
        elif key == "metric_checks":
            values[key] = _metric_checks(path, name, value)
        else:
            values[key] = _seconds(path, name, value)
    return base._replace(**values)


def _channels(path: Path, where: str, table: dict[str, object]) -> ChannelSources:
    urls = table.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and u.strip() for u in urls):
        raise ConfigError(f"{path}: {where}.urls: expected a list of notification URLs")
    return ChannelSources(
        urls=tuple(u.strip() for u in urls),
        credential=_text(path, f"{where}.urls_credential", table.get("urls_credential", "")),
        file=_text(path, f"{where}.urls_file", table.get("urls_file", "")),
    )
