"""journald.conf as journald reads it: the main file, then drop-ins by name, /etc first.

Pure: the files' texts come in, the settings that matter to observer come out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# Where journald looks, most important last for the main file; a drop-in's name in a
# directory earlier here hides the same name in the later ones (systemd.unit(5) rules).
MAIN_FILES = ("usr/lib/systemd/journald.conf", "etc/systemd/journald.conf")
DROPIN_DIRS = (
    "etc/systemd/journald.conf.d",
    "run/systemd/journald.conf.d",
    "usr/local/lib/systemd/journald.conf.d",
    "usr/lib/systemd/journald.conf.d",
)

_SPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2629800, "month": 2629800, "months": 2629800,
    "y": 31557600, "year": 31557600, "years": 31557600,
}  # fmt: skip
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTPE]?)B?", re.I)
_SIZE_POWER = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


@dataclass(frozen=True, slots=True)
class Setting:
    """One value and the file that set it (what a person edits to change it)."""

    value: str
    source: str


@dataclass(frozen=True, slots=True)
class JournaldSettings:
    """What journald does that decides what observer can see (systemd's defaults if unset)."""

    values: dict[str, Setting] = field(default_factory=dict)

    def text(self, key: str, default: str) -> str:
        setting = self.values.get(key)
        return default if setting is None else setting.value

    def source(self, key: str) -> str | None:
        setting = self.values.get(key)
        return None if setting is None else setting.source

    @property
    def storage(self) -> str:
        return self.text("Storage", "auto").strip().lower()

    @property
    def max_retention_seconds(self) -> float | None:
        """MaxRetentionSec=; None when journald keeps entries until space runs out."""
        span = parse_span(self.text("MaxRetentionSec", "0"))
        return span or None

    @property
    def rate_limit_interval_seconds(self) -> float | None:
        return parse_span(self.text("RateLimitIntervalSec", "30s"))

    @property
    def rate_limit_burst(self) -> int | None:
        text = self.text("RateLimitBurst", "10000").strip()
        return int(text) if text.isdecimal() else None

    def max_use_bytes(self, volatile: bool) -> int | None:
        """SystemMaxUse= (RuntimeMaxUse= for a volatile journal); None: journald's default."""
        return parse_size(self.text("RuntimeMaxUse" if volatile else "SystemMaxUse", ""))


def parse_span(text: str) -> float | None:
    """A systemd time span (``30s``, ``1month``, ``2w 3d``; a bare number is seconds)."""
    text = text.strip()
    if not text:
        return None
    if text in ("infinity",):
        return float("inf")
    total, at = 0.0, 0
    for match in _SPAN_PART.finditer(text):
        if text[at : match.start()].strip():
            return None
        unit = match.group(2) or "s"
        if unit not in _SPAN_UNITS:
            return None
        total += float(match.group(1)) * _SPAN_UNITS[unit]
        at = match.end()
    return total if at and not text[at:].strip() else None


def parse_size(text: str) -> int | None:
    """A size as journald reads one (``500M``, ``2G``; powers of 1024); None if unset or bad."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        return None
    return int(float(match.group(1)) * 1024 ** _SIZE_POWER[match.group(2).upper()])


def read_settings(files: Iterable[tuple[str, str]]) -> JournaldSettings:
    """The settings of [Journal] in ``files`` (name, text), applied in the order given."""
    values: dict[str, Setting] = {}
    for name, text in files:
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            if sep and section == "Journal":
                values[key.strip()] = Setting(value.strip(), name)
    return JournaldSettings(values)


def config_order(main: list[str], dropins: dict[str, list[str]]) -> list[str]:
    """The files journald reads, in order: the main file, then drop-ins sorted by name.

    ``main``: the main files that exist, as MAIN_FILES lists them; ``dropins``: for each
    directory of DROPIN_DIRS, the ``*.conf`` names in it.
    """
    chosen: dict[str, str] = {}
    for directory in reversed(DROPIN_DIRS):  # a name in an earlier directory wins
        for name in dropins.get(directory, []):
            chosen[name] = f"{directory}/{name}"
    return [*main[-1:], *(chosen[name] for name in sorted(chosen))]
