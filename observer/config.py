"""The TOML configuration, read into immutable records (observer/records.py: `observer run`
imports no dataclasses for them); errors name file, key and value."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

from observer.alert_config import MAX_WHOLE, AlertsConfig
from observer.config_file import OUTPUT_FAILED_MAX_BYTES, OUTPUT_MAX_BYTES, config_to_read
from observer.model import ConfigError
from observer.records import NamedTuple

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ObserveConfig(NamedTuple):
    """Which units are observed: globs over full unit names (a user's: ``alice/x.service``),
    and whose user units the system daemon records: globs over user names."""

    include: tuple[str, ...] = ("*.service",)
    exclude: tuple[str, ...] = ()
    users: tuple[str, ...] = ("*",)

    def observes(self, unit: str) -> bool:
        return any(fnmatch.fnmatchcase(unit, g) for g in self.include) and not any(
            fnmatch.fnmatchcase(unit, g) for g in self.exclude
        )

    def observes_user(self, user: str) -> bool:
        return any(fnmatch.fnmatchcase(user, g) for g in self.users)


class OutputConfig(NamedTuple):
    """How much of each run's output is kept (start and end; the middle is dropped)."""

    max_bytes: int = OUTPUT_MAX_BYTES
    failed_max_bytes: int = OUTPUT_FAILED_MAX_BYTES


class RetentionConfig(NamedTuple):
    """How long runs are kept."""

    max_age_days: int = 90
    max_runs_per_unit: int = 5000


class JournalConfig(NamedTuple):
    """Where the journal is read and how far back the first start looks."""

    directory: str = ""
    backfill_days: int = 7
    write_runs: bool = True  # a record of each finished run into the journal (docs/fleet.md)


class FleetConfig(NamedTuple):
    """A central observer: where the journals received from the fleet's hosts are."""

    directory: str = ""  # e.g. "/var/log/journal/remote"; empty: this host's own runs only


class DashboardConfig(NamedTuple):
    """Where the daemon keeps the static HTML pages, and how often it rewrites them."""

    directory: str = ""  # empty: no pages (with serve: dashboard/ beside the database)
    quiet_seconds: int = 5  # rewrite once no run has ended for this long
    min_interval_seconds: int = 30  # and at most this often
    serve: bool = False  # serve the pages read-only on the metrics listener ([metrics] listen)


class RunConfig(NamedTuple):
    """Where `observer run` keeps runs it could not store, and what jobs write as metrics."""

    spool_dir: str = ""  # empty: spool/ beside the database (as root too)
    metrics_dir: str = ""  # empty: job-metrics/ beside the database


# The names systemd-run makes up for a unit it is not given one for: run-u<bus id> (252),
# run-r<32 hex digits: a random ID> (when it talks to PID 1 directly, as root does) and
# run-p<PID>-i<inode> (256 and later). Every one is its own unit, so each would be its own
# series; they are shown as one, `run-*.service`.
SYSTEMD_RUN_FOLD = (
    "run-*.service=run-u[0-9]*.service",
    "run-*.service=run-r" + "?" * 32 + ".service",
    "run-*.service=run-p[0-9]*-i[0-9]*.service",
)


class MetricsConfig(NamedTuple):
    """Where the daemon serves Prometheus metrics, and the files it writes and reads."""

    listen: str = "127.0.0.1:9089"  # HOST:PORT of /metrics; empty: no HTTP endpoint
    textfile_directory: str = ""  # write observer.prom here for node_exporter or Alloy
    job_metrics_directory: str = ""  # empty: [run] metrics_dir, else job-metrics/ beside the db
    web_config: str = ""  # an exporter-toolkit web config file: TLS and basic auth of the listener
    fold: tuple[str, ...] = SYSTEMD_RUN_FOLD  # units shown as one series: GLOB or NAME=GLOB

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for each bad value; the reader names the file and line."""
        found = []
        for rule in self.fold:
            try:
                fold_rule(rule)
            except ValueError as e:
                found.append(("fold", str(e)))
        return found


def fold_rule(rule: str) -> tuple[str, str]:
    """A ``[metrics] fold`` entry as (name, glob); ValueError says what is wrong with it."""
    name, equals, glob = rule.partition("=")
    name, glob = name.strip(), glob.strip()
    if not equals:
        glob = name
    if not name or not glob:
        raise ValueError(f'{rule!r} is not GLOB or NAME=GLOB (e.g. "backup@*.service")')
    return name, glob


class JobsConfig(NamedTuple):
    """Where the jobs file is (`observer jobs`), whose alert rules the daemon applies."""

    file: str = "/etc/observer/jobs.toml"  # and jobs.d/*.toml beside it


class Config(NamedTuple):
    """Everything that can be set in observer.toml."""

    host: str = ""
    observe: ObserveConfig = ObserveConfig()
    output: OutputConfig = OutputConfig()
    retention: RetentionConfig = RetentionConfig()
    journal: JournalConfig = JournalConfig()
    fleet: FleetConfig = FleetConfig()
    run: RunConfig = RunConfig()
    dashboard: DashboardConfig = DashboardConfig()
    metrics: MetricsConfig = MetricsConfig()
    jobs: JobsConfig = JobsConfig()
    alerts: AlertsConfig = AlertsConfig()


_SECTIONS: dict[str, type[Any]] = {
    "run": RunConfig,
    "observe": ObserveConfig,
    "output": OutputConfig,
    "retention": RetentionConfig,
    "journal": JournalConfig,
    "fleet": FleetConfig,
    "dashboard": DashboardConfig,
    "metrics": MetricsConfig,
    "jobs": JobsConfig,
    "alerts": AlertsConfig,
}


class _BadSetting(ConfigError):
    """A bad key or value; load_config puts the file and line in front of the message."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key  # dotted, as written in the file: "retention.max_age_days", "retention"


def _coerce(path: Path, key: str, value: object, default: object) -> object:
    where = f"{key} = {shown(value)}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _BadSetting(key, f"{where}: expected true or false")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _BadSetting(key, f"{where}: expected a whole number >= 0")
        if value > MAX_WHOLE:
            raise _BadSetting(key, f"{where}: too large (at most {MAX_WHOLE})")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _BadSetting(key, f"{where}: expected a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _BadSetting(key, f"{where}: expected a list of strings")
        return tuple(value)
    raise _BadSetting(key, f"{where}: unsupported setting")


def _section(path: Path, name: str, cls: type[Any], table: object) -> object:
    if hasattr(cls, "from_table"):  # a section with tables of its own reads itself
        return cls.from_table(path, name, table)
    if not isinstance(table, dict):
        raise _BadSetting(name, f"{name} = {shown(table)}: [{name}] must be a table")
    defaults = cls()
    known = set(cls._fields)
    values = {}
    for key, value in table.items():
        if key not in known:
            raise _BadSetting(
                f"{name}.{key}", f"unknown key {name}.{key} = {shown(value)}{hint(key, known)}"
            )
        values[key] = _coerce(path, f"{name}.{key}", value, getattr(defaults, key))
    section = cls(**values)
    for key, problem in getattr(section, "problems", list)():
        raise _BadSetting(f"{name}.{key}", f"{name}.{key} = {shown(table[key])}: {problem}")
    return section


def read_toml(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and tables; errors name the file (and the line) for people."""
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(syntax_error(path, text, e)) from e
    except ValueError as e:  # an integer of more than 4300 digits (sys.get_int_max_str_digits)
        raise ConfigError(f"{path}: invalid TOML: {e}") from e


def load_config(path: Path | None) -> Config:
    """Read the config file; a missing default file means all defaults."""
    path = config_to_read(path)
    if path is None:
        return Config()
    text, data = read_toml(path, "config")
    kwargs: dict[str, object] = {}
    try:
        for key, value in data.items():
            if key in _SECTIONS:
                kwargs[key] = _section(path, key, _SECTIONS[key], value)
            elif key == "host":
                kwargs[key] = _coerce(path, key, value, "")
            else:
                known = {"host", *_SECTIONS}
                what = f"section [{key}]" if isinstance(value, dict) else f"key {key}"
                raise _BadSetting(key, f"unknown {what} = {shown(value)}{hint(key, known)}")
    except _BadSetting as e:
        line = line_of(text, _key_parts(e.key))
        raise ConfigError(f"{path}:{line}: {e}" if line else f"{path}: {e}") from e
    except ConfigError as e:  # a section that reads itself: "{path}: {key} = {value}: ..."
        raise _with_line(path, text, e) from e
    return Config(**kwargs)  # type: ignore[arg-type]


def dashboard_directory(config: Config, db_path: Path) -> Path | None:
    """Where the daemon keeps the dashboard's pages: ``[dashboard] directory``, or, to serve
    them, ``dashboard/`` beside the database; None for no pages."""
    if config.dashboard.serve and not config.metrics.listen:
        raise ConfigError(
            "dashboard.serve = true serves the pages on the metrics listener, but metrics.listen "
            "(or --listen) is empty: give it a HOST:PORT, or set dashboard.serve = false"
        )
    if config.dashboard.directory:
        return Path(config.dashboard.directory)
    return db_path.parent / "dashboard" if config.dashboard.serve else None


# -- where in the file: errors name the line, as compilers do (``path:line: ...``) --------


def shown(value: object, limit: int = 60) -> str:
    """A value as TOML writes it (``"text"``, ``true``, ``[1, 2]``), shortened to ``limit``."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(shown(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{ " + ", ".join(f"{k} = {shown(v, limit)}" for k, v in value.items()) + " }"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def hint(key: str, known: set[str]) -> str:
    import difflib  # noqa: PLC0415 (only a mistake needs it)

    close = difflib.get_close_matches(key, known, n=1)
    did_you_mean = f"did you mean {close[0]}? " if close else ""
    return f" ({did_you_mean}known: {', '.join(sorted(known))})"


def syntax_error(path: Path, text: str, error: tomllib.TOMLDecodeError) -> str:
    """``path:line:column: invalid TOML: ...``, with the line it is about."""
    message = str(error)
    at = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if at is None:
        if message.endswith(end := " (at end of document)"):
            problem = message.removesuffix(end)
            return f"{path}:{max(1, len(text.splitlines()))}: invalid TOML: {problem} at the end"
        return f"{path}: invalid TOML: {message}"
    line, column = int(at[1]), int(at[2])
    lines = text.splitlines()
    shown = f": {lines[line - 1].strip()}" if 0 < line <= len(lines) else ""
    return f"{path}:{line}:{column}: invalid TOML: {message[: at.start()]}{shown}"


_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEY = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_TABLE_HEADER = re.compile(rf"[ \t]*\[\[?[ \t]*({_KEY})[ \t]*\]")
_ASSIGNMENT = re.compile(rf"[ \t]*({_KEY})[ \t]*=")


def _key_parts(key: str) -> tuple[str, ...]:
    """A dotted key as written (``metrics."listen"``) into its names (``metrics``, ``listen``)."""
    parts = []
    for written in re.findall(_KEY_PART, key):
        if written.startswith('"'):
            try:
                parts.append(str(json.loads(written)))
            except ValueError:  # a name with a control character or an escape JSON lacks
                parts.append(written[1:-1])
        elif written.startswith("'"):
            parts.append(written[1:-1])
        else:
            parts.append(written)
    return tuple(parts)


def _with_line(path: Path, text: str, error: ConfigError) -> ConfigError:
    """``error`` with the line of the key it names after ``{path}: ``, when there is one."""
    prefix = f"{path}: "
    message = str(error)
    named = re.match(rf"(?:unknown key |\[)?({_KEY})", message.removeprefix(prefix))
    if not message.startswith(prefix) or named is None:
        return error
    line = line_of(text, _key_parts(named[1]))
    return ConfigError(f"{path}:{line}: {message.removeprefix(prefix)}") if line else error


def line_of(text: str, wanted: tuple[str, ...]) -> int | None:
    """The line that sets the key ``wanted`` (``("retention", "max_age_days")``), or the
    inline table that holds it, or the header of the table it names; None if not found."""
    table: tuple[str, ...] = ()
    inline: int | None = None
    quote = ""  # the delimiter of a multi-line string being skipped
    for number, line in enumerate(text.splitlines(), start=1):
        if quote:
            if line.count(quote) % 2:
                quote = ""
            continue
        if header := _TABLE_HEADER.match(line):
            table = _key_parts(header[1])
            if table == wanted:
                return number
        elif assignment := _ASSIGNMENT.match(line):
            key = table + _key_parts(assignment[1])
            if key == wanted:
                return number
            if inline is None and wanted[: len(key)] == key:
                inline = number
        quote = _string_left_open(line)
    return inline


def _string_left_open(line: str) -> str:
    """The delimiter of a multi-line string that ``line`` opens, or "" if it opens none."""
    quote = ""
    for delimiter in ('"""', "'''"):
        if line.count(delimiter) % 2:
            quote = delimiter
    return quote
