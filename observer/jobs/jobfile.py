"""The jobs file: ``[jobs.NAME]`` tables read into frozen Jobs; errors as `check-config` gives them.

Every error reads ``FILE:LINE: jobs.NAME.key = value: problem`` (with a did-you-mean for
unknown keys), so that `observer jobs check` points at the line to fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from observer.alert_config import UNIT_KEYS
from observer.config import hint, line_of, read_toml, shown
from observer.jobs.schedule import ScheduleError, TimerSettings, timer_settings
from observer.model import ConfigError
from observer.spans import parse_seconds

DEFAULT_JOBS_PATH = Path("/etc/observer/jobs.toml")
# What a unit name allows (systemd's unit_name_is_valid), less '@' and '\': a job is no template.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_MAX_NAME = 255 - len(".service")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,30}|\d+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT = re.compile(
    r"[A-Za-z0-9_.:@\\-]+\.(service|socket|mount|automount|target|path|swap|device|timer|slice)"
)
_SIZE = re.compile(r"\d+[KMGT]?|\d{1,3}%|infinity")
_QUOTA = re.compile(r"\d{1,5}%")
# ReadWritePaths= splits on spaces and unquotes: paths without either keep it simple.
_RW_PATH = re.compile(r"/[^\x00-\x20\x7f\"'\\]*")
_TIMEZONE = re.compile(r"[A-Za-z0-9_+/-]+")


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret the job reads from ``$CREDENTIALS_DIRECTORY/NAME``."""

    name: str
    path: PurePosixPath
    encrypted: bool = False  # made by `systemd-creds encrypt`: LoadCredentialEncrypted=


@dataclass(frozen=True, slots=True)
class Job:
    """One ``[jobs.NAME]`` table, checked."""

    name: str
    command: tuple[str, ...]  # the argv; a string in the file is ("/bin/sh", "-c", it)
    schedules: tuple[str, ...]  # as written
    timers: tuple[TimerSettings, ...]
    source: Path
    line: int | None = None
    timezone: str = ""
    description: str = ""
    user: str = ""
    group: str = ""
    working_directory: str = ""
    environment: tuple[tuple[str, str], ...] = ()
    environment_file: str = ""
    credentials: tuple[Credential, ...] = ()
    timeout: float = 0.0
    random_delay: float = 0.0
    persistent: bool = True
    retries: int = 0
    retry_delay: float = 30.0
    nice: int | None = None
    memory_max: str = ""
    cpu_quota: str = ""
    after: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    metrics: bool = True
    hardening: bool = True
    read_write_paths: tuple[str, ...] = ()  # ReadWritePaths=: opened again in the sandbox
    alerts: dict[str, object] | None = field(default=None, compare=False)

    @property
    def service(self) -> str:
        return f"{self.name}.service"

    @property
    def timer(self) -> str:
        return f"{self.name}.timer"


KEYS = {
    "command", "schedule", "timezone", "description", "user", "group", "working_directory",
    "environment", "environment_file", "credentials", "timeout", "random_delay", "persistent",
    "retries", "retry_delay", "nice", "memory_max", "cpu_quota", "after", "requires",
    "metrics", "hardening", "read_write_paths", "alerts",
}  # fmt: skip


class _Bad(ConfigError):
    def __init__(self, key: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.key = key


def jobs_files(path: Path) -> list[Path]:
    """The file and, beside it, ``jobs.d/*.toml`` in name order."""
    files = [path] if path.exists() else []
    directory = path.with_name(path.stem + ".d")
    if directory.is_dir():
        files.extend(sorted(directory.glob("*.toml")))
    return files


def load_jobs(paths: list[Path]) -> list[Job]:
    """Every job the files declare; a name declared twice is an error."""
    jobs: dict[str, Job] = {}
    for path in paths:
        for job in load_file(path):
            if job.name in jobs:
                first = jobs[job.name]
                raise ConfigError(
                    f"{path}:{job.line or 1}: job {job.name!r} is already declared in "
                    f"{first.source}:{first.line or 1}"
                )
            jobs[job.name] = job
    return sorted(jobs.values(), key=lambda j: j.name)


def load_file(path: Path) -> list[Job]:
    """The jobs of one file."""
    text, data = read_toml(path, "jobs file")
    try:
        return parse(path, data, lambda key: line_of(text, key))
    except _Bad as e:
        line = line_of(text, e.key)
        raise ConfigError(f"{path}:{line}: {e}" if line else f"{path}: {e}") from e


def parse(path: Path, data: dict[str, object], line: object = None) -> list[Job]:
    """The jobs of a file's TOML; ``line(key) -> int | None`` finds a table's line."""
    for key in data:
        if key != "jobs":
            raise _Bad((key,), f"unknown table [{key}]: a jobs file holds only [jobs.NAME] tables")
    tables = data.get("jobs", {})
    if not isinstance(tables, dict):
        raise _Bad(("jobs",), "jobs must be a table of [jobs.NAME] tables")
    jobs = []
    for name, table in tables.items():
        where = ("jobs", name)
        _check_name(name)
        if not isinstance(table, dict):
            raise _Bad(where, f"jobs.{name} = {shown(table)}: expected a table [jobs.{name}]")
        found = line(where) if callable(line) else None
        jobs.append(_job(path, name, table, found if isinstance(found, int) else None))
    return jobs


def _check_name(name: str) -> None:
    if (
        _NAME.fullmatch(name)
        and len(name) <= _MAX_NAME
        and not name.endswith((".service", ".timer"))
    ):
        return
    suggestion = re.sub(r"[^A-Za-z0-9_.:-]+", "-", name).strip("-").removesuffix(".service")
    suggestion = suggestion.removesuffix(".timer")[:_MAX_NAME] or "my-job"
    raise _Bad(
        ("jobs", name),
        f"job name {shown(name)} cannot name a unit: use letters, digits and - _ . : "
        f"(without .service), e.g. [jobs.{suggestion}]",
    )


# Builds the error about one key of a job's table: (key, problem) -> the error to raise.
_Complaint = Callable[[str, str], _Bad]
# The keys whose value is one line of text, and those of them with a shape to follow.
_TEXT_KEYS = (
    "description", "user", "group", "working_directory", "environment_file", "timezone",
    "memory_max", "cpu_quota",
)  # fmt: skip
_SHAPED_TEXT = (
    ("user", _USER, "backup"), ("group", _USER, "backup"),
    ("timezone", _TIMEZONE, "Europe/Berlin"), ("memory_max", _SIZE, "512M"),
    ("cpu_quota", _QUOTA, "50%"),
)  # fmt: skip


def _job(path: Path, name: str, table: dict[str, object], line: int | None) -> Job:
    """One ``[jobs.NAME]`` table: each concern read by its own reader, in the file's terms."""

    def bad(key: str, problem: str) -> _Bad:
        return _Bad(("jobs", name, key), f"jobs.{name}.{key} = {shown(table[key])}: {problem}")

    _check_keys(name, table)
    values: dict[str, object] = {"command": _command(table["command"], bad)}
    values.update(_schedules(table["schedule"], bad))
    values.update(_texts(table, bad))
    if "environment" in table:
        values["environment"] = _environment(table["environment"], bad)
    if "credentials" in table:
        values["credentials"] = _credentials(table["credentials"], bad)
    values.update(_durations(table, bad))
    values.update(_switches(table, bad))
    values.update(_whole_numbers(table, values, bad))
    values.update(_dependencies(table, bad))
    if "read_write_paths" in table:
        values["read_write_paths"] = _read_write_paths(table, bad)
    if "alerts" in table:
        values["alerts"] = _alert_rules(name, table["alerts"], bad)
    return Job(name=name, source=path, line=line, **values)  # type: ignore[arg-type]


def _check_keys(name: str, table: dict[str, object]) -> None:
    """No key the file format does not know, and the two a job cannot do without."""
    for key, value in table.items():
        if key not in KEYS:
            raise _Bad(
                ("jobs", name, key),
                f"unknown key jobs.{name}.{key} = {shown(value)}{hint(key, KEYS)}",
            )
    for required in ("command", "schedule"):
        if required not in table:
            raise _Bad(("jobs", name), f"[jobs.{name}] has no {required} (it is required)")


def _command(command: object, bad: _Complaint) -> tuple[str, ...]:
    """The argv: a string runs under ``/bin/sh -c``, a list is the argv itself."""
    argv: tuple[str, ...]
    if isinstance(command, str) and command.strip():
        argv = ("/bin/sh", "-c", command)
    elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        if not command[0] or command[0].startswith(("-", "@", ":", "+", "!")):
            raise bad("command", "the program must be a path or a name, e.g. /usr/bin/borg")
        argv = tuple(command)
    else:
        raise bad(
            "command", 'expected a string (run by /bin/sh -c) or a list like ["borg", "create"]'
        )
    if any("\0" in text for text in argv):
        raise bad("command", "holds a NUL character")
    return argv


def _schedules(schedules: object, bad: _Complaint) -> dict[str, object]:
    """The schedules as written and the timer settings each becomes."""
    written = [schedules] if isinstance(schedules, str) else schedules
    if not isinstance(written, list) or not written or not all(isinstance(s, str) for s in written):
        raise bad("schedule", "expected a schedule or a list of them")
    try:
        timers = tuple(timer_settings(s) for s in written)
    except ScheduleError as e:
        raise bad("schedule", str(e)) from None
    return {"timers": timers, "schedules": tuple(s.strip() for s in written)}


def _texts(table: dict[str, object], bad: _Complaint) -> dict[str, object]:
    """The one-line settings: names, paths, a time zone, resource limits."""
    values: dict[str, object] = {}
    for key in _TEXT_KEYS:
        if key in table:
            value = table[key]
            if not isinstance(value, str):
                raise bad(key, "expected a string")
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise bad(key, "holds a newline or another control character")
            values[key] = value.strip()
    for key, pattern, example in _SHAPED_TEXT:
        if values.get(key) and not pattern.fullmatch(str(values[key])):
            raise bad(key, f"not a valid {key.replace('_', ' ')}, e.g. {example!r}")
    for key in ("working_directory", "environment_file"):
        if key in values and not str(values[key]).startswith("/"):
            raise bad(key, "expected an absolute path")
    return values


def _environment(env: object, bad: _Complaint) -> tuple[tuple[str, str], ...]:
    """The variables set for the command, as (name, value) pairs."""
    if not isinstance(env, dict):
        raise bad("environment", 'expected a table, e.g. { BORG_REPO = "/srv/borg" }')
    pairs = []
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key) or not isinstance(value, str) or "\0" in value:
            raise bad(
                "environment",
                f"{key!r} needs a name of letters, digits and _ and a string value",
            )
        pairs.append((key, value))
    return tuple(pairs)


def _durations(table: dict[str, object], bad: _Complaint) -> dict[str, object]:
    """The durations, in seconds: the timeout, the random delay, the delay between retries."""
    values: dict[str, object] = {}
    for key in ("timeout", "random_delay", "retry_delay"):
        if key in table:
            try:
                values[key] = parse_seconds(table[key])
            except ValueError as e:
                raise bad(key, str(e)) from None
    return values


def _switches(table: dict[str, object], bad: _Complaint) -> dict[str, object]:
    """The settings that are on or off."""
    values: dict[str, object] = {}
    for key in ("persistent", "metrics", "hardening"):
        if key in table:
            if not isinstance(table[key], bool):
                raise bad(key, "expected true or false")
            values[key] = table[key]
    return values


def _whole_numbers(
    table: dict[str, object], read: dict[str, object], bad: _Complaint
) -> dict[str, object]:
    """The retries (which need the timeout ``read`` already holds) and the nice level."""
    values: dict[str, object] = {}
    if "retries" in table:
        retries = table["retries"]
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
            raise bad("retries", "expected a whole number from 0 to 100")
        values["retries"] = retries
        if retries and not read.get("timeout"):
            raise bad("retries", "set timeout too: the retries of a run are counted within "
                      "(retries + 1) x (timeout + retry_delay)")  # fmt: skip
    if "nice" in table:
        nice = table["nice"]
        if not isinstance(nice, int) or isinstance(nice, bool) or not -20 <= nice <= 19:
            raise bad("nice", "expected a whole number from -20 to 19")
        values["nice"] = nice
    return values


def _dependencies(table: dict[str, object], bad: _Complaint) -> dict[str, object]:
    """The units the job runs after, and those it requires."""
    values: dict[str, object] = {}
    for key in ("after", "requires"):
        if key in table:
            units = table[key]
            if not isinstance(units, list) or not all(
                isinstance(u, str) and _UNIT.fullmatch(u) for u in units
            ):
                raise bad(key, 'expected a list of unit names, e.g. ["srv-backup.mount"]')
            values[key] = tuple(units)
    return values


def _read_write_paths(table: dict[str, object], bad: _Complaint) -> tuple[str, ...]:
    """The paths the sandbox's read-only trees open again for the job (ReadWritePaths=)."""
    paths = table["read_write_paths"]
    if not isinstance(paths, list) or not all(
        isinstance(p, str) and _RW_PATH.fullmatch(p) for p in paths
    ):
        raise bad("read_write_paths", 'expected a list of absolute paths without spaces, '
                  'quotes or backslashes, e.g. ["/etc/letsencrypt"]')  # fmt: skip
    if table.get("hardening") is False:
        raise bad("read_write_paths", "opens paths of the sandbox, and hardening = false "
                  "turns the sandbox off: remove one of the two")  # fmt: skip
    return tuple(paths)


def _alert_rules(name: str, alerts: object, bad: _Complaint) -> dict[str, object]:
    """The job's ``[jobs.NAME.alerts]``: a unit's alert keys, checked later as a unit's are."""
    if not isinstance(alerts, dict):
        raise bad("alerts", "expected a table [jobs.NAME.alerts]")
    for key in alerts:
        if key not in UNIT_KEYS:
            raise _Bad(("jobs", name, "alerts", key),
                       f"unknown key jobs.{name}.alerts.{key} = {shown(alerts[key])}"
                       f"{hint(key, UNIT_KEYS)}")  # fmt: skip
    return dict(alerts)


def _credentials(value: object, bad: _Complaint) -> tuple[Credential, ...]:
    """The secrets the job reads, each from a file (or one systemd-creds encrypted)."""
    if not isinstance(value, dict):
        raise bad(
            "credentials",
            'expected a table, e.g. { passphrase = "/etc/observer/credentials/borg" }',
        )
    found = []
    for name, written in value.items():
        encrypted = isinstance(written, dict) and set(written) == {"encrypted"}
        source = written["encrypted"] if isinstance(written, dict) and encrypted else written
        if not _ENV_NAME.fullmatch(name.replace("-", "_").replace(".", "_")):
            raise bad("credentials", f"credential name {name!r}: use letters, digits, - _ .")
        if (
            not isinstance(source, str)
            or not source.startswith("/")
            or any(ord(c) < 32 or c in ":%\\" for c in source)
        ):
            raise bad("credentials", f"{name}: expected an absolute path (no ':', '%' or "
                      '\'\\\'), or { encrypted = "PATH" } for a file made by systemd-creds '
                      "encrypt")  # fmt: skip
        found.append(Credential(name, PurePosixPath(source), encrypted))
    return tuple(found)
