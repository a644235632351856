"""The TOML configuration, read into a frozen dataclass; errors name file, key and value."""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from observer.model import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/observer/observer.toml")


@dataclass(frozen=True, slots=True)
class ObserveConfig:
    """Which units are observed: globs over full unit names."""

    include: tuple[str, ...] = ("*.service",)
    exclude: tuple[str, ...] = ()

    def observes(self, unit: str) -> bool:
        return any(fnmatch.fnmatchcase(unit, g) for g in self.include) and not any(
            fnmatch.fnmatchcase(unit, g) for g in self.exclude
        )


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """How much of each run's output is kept (start and end; the middle is dropped)."""

    max_bytes: int = 64 * 1024
    failed_max_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How long runs are kept."""

    max_age_days: int = 90
    max_runs_per_unit: int = 5000


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where the journal is read and how far back the first start looks."""

    directory: str = ""
    backfill_days: int = 7


@dataclass(frozen=True, slots=True)
class Config:
    """Everything that can be set in observer.toml."""

    host: str = ""
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)


_SECTIONS: dict[str, type[Any]] = {
    "observe": ObserveConfig,
    "output": OutputConfig,
    "retention": RetentionConfig,
    "journal": JournalConfig,
}


def _coerce(path: Path, key: str, value: object, default: object) -> object:
    where = f"{path}: {key} = {value!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: expected a whole number >= 0")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported setting")


def _section(path: Path, name: str, cls: type[Any], table: object) -> object:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    defaults = cls()
    known = {f.name for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{path}: unknown key {name}.{key} (known: {', '.join(sorted(known))})"
            )
        values[key] = _coerce(path, f"{name}.{key}", value, getattr(defaults, key))
    return cls(**values)


def load_config(path: Path | None) -> Config:
    """Read the config file; a missing default file means all defaults."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {str(path)!r}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    kwargs: dict[str, object] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            kwargs[key] = _section(path, key, _SECTIONS[key], value)
        elif key == "host":
            kwargs[key] = _coerce(path, key, value, "")
        else:
            known = ", ".join(["host", *sorted(_SECTIONS)])
            raise ConfigError(f"{path}: unknown key {key} (known: {known})")
    return Config(**kwargs)  # type: ignore[arg-type]
