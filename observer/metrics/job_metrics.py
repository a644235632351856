"""Metrics jobs report themselves: Prometheus text files in one directory, checked and labelled.

A job writes the file named by ``$JOB_METRICS_FILE``; observer exports its metrics with the
job's ``unit`` label added. Two places hold them, both named after the unit (or the name of
an `observer run` job), which becomes the ``unit`` label:

- ``DIR/NAME.prom``: a file (what `observer run` jobs write);
- ``DIR/NAME/metrics.prom``: inside a per-unit directory that systemd creates and hands to
  the unit (``StateDirectory=``, see `observer metrics-file enable`).

A file with anything wrong is left out whole, with a log line and a count in
``observer_custom_metrics_rejected_total{unit,reason}``; it never breaks the export.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.samples import Sample

log = logging.getLogger(__name__)

UNIT_DIRECTORY_FILE = "metrics.prom"
MAX_FILE_BYTES = 1024 * 1024
MAX_SERIES_PER_FILE = 10_000
MAX_FILES = 10_000
# A file this fresh that looks cut short is probably being written: keep its last version.
SETTLE_SECONDS = 2.0
RESERVED_PREFIX = "observer_"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# One sample line of the text format (0.0.4), as strictly as Prometheus reads it: the
# client's parser is lenient (it reads `x{a=} 1` as `x 1`), so lines are checked first.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*"(?:[^"\\\n]|\\.)*"'
_VALUE = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf(?:inity)?|nan))"
_LABELS = rf"\{{[ \t]*(?:{_LABEL}[ \t]*(?:,[ \t]*{_LABEL}[ \t]*)*,?[ \t]*)?\}}"
_SAMPLE_LINE = re.compile(
    rf"[a-zA-Z_:][a-zA-Z0-9_:]*[ \t]*(?:{_LABELS})?[ \t]+{_VALUE}(?:[ \t]+-?\d+)?[ \t]*"
)
_TYPES = frozenset({"counter", "gauge", "summary", "histogram", "unknown"})


def job_metrics_directory(db_path: Path, configured: str = "") -> Path:
    """Where jobs' metric files are: ``$OBSERVER_METRICS_DIR``, else as configured, else
    ``job-metrics/`` beside the database (the same rule as `observer run`'s)."""
    if env := os.environ.get("OBSERVER_METRICS_DIR"):
        return Path(env)
    if configured:
        return Path(configured)
    return db_path.absolute().parent / "job-metrics"


class RejectedFile(Exception):
    """A job's metrics file cannot be exported; ``reason`` is a short label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_job_metrics(unit: str, text: str) -> list[Metric]:
    """Check one file's Prometheus text and return its families with ``unit`` added."""
    # Imported here: `observer metrics-file` uses this module and starts faster without.
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415
    from prometheus_client.samples import Sample  # noqa: PLC0415

    _check_lines(text)
    try:
        parsed = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError, IndexError, ... on bad input
        raise RejectedFile("parse_error", _first_line(str(e)) or "not Prometheus text") from e
    families: dict[str, Metric] = {}
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in parsed:
        merged = _merged_family(families, family)
        for sample in family.samples:
            labels = _labels(sample, unit)
            key = (sample.name, tuple(sorted(labels.items())))
            if key in series:
                raise RejectedFile("duplicate_series", f"{sample.name}{sample.labels or ''} twice")
            series.add(key)
            if len(series) > MAX_SERIES_PER_FILE:
                raise RejectedFile("too_many_series", f"more than {MAX_SERIES_PER_FILE} series")
            merged.samples.append(Sample(sample.name, labels, float(sample.value)))
    return list(families.values())


def _merged_family(families: dict[str, Metric], family: Metric) -> Metric:
    """The family in ``families`` that ``family``'s samples join (a name may come twice)."""
    from prometheus_client.metrics_core import Metric  # noqa: PLC0415

    _check_name(family.name)
    if family.type not in _TYPES:
        raise RejectedFile("unsupported_type", f"{family.name} has type {family.type}")
    merged = families.get(family.name)
    if merged is None:
        merged = families[family.name] = Metric(family.name, family.documentation, family.type)
    elif merged.type != family.type:
        raise RejectedFile(
            "type_conflict", f"{family.name} is both {merged.type} and {family.type}"
        )
    return merged


def _labels(sample: Sample, unit: str) -> dict[str, str]:
    """A sample's labels with ``unit`` added, once the sample is one observer may export."""
    _check_name(sample.name)
    if sample.timestamp is not None:
        raise RejectedFile("timestamp", f"{sample.name} carries a timestamp")
    for label in sample.labels:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise RejectedFile("invalid_name", f"label name {label!r} of {sample.name}")
    if "unit" in sample.labels:
        raise RejectedFile(
            "unit_label", f"{sample.name} sets the unit label, which observer adds itself"
        )
    return {**sample.labels, "unit": unit}


def _check_lines(text: str) -> None:
    """Reject what Prometheus would not read: bad sample lines, a TYPE or HELP given twice."""
    typed: set[str] = set()
    helped: set[str] = set()
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) < 2 or parts[1] not in ("TYPE", "HELP"):
                continue  # a comment
            if len(parts) < 3 or not _METRIC_NAME.fullmatch(parts[2]):
                raise RejectedFile("parse_error", f"line {number}: {parts[1]} without a valid name")
            name, seen = parts[2], typed if parts[1] == "TYPE" else helped
            if name in seen:
                reason = "type_conflict" if parts[1] == "TYPE" else "parse_error"
                raise RejectedFile(reason, f"line {number}: second {parts[1]} for {name}")
            seen.add(name)
        elif not _SAMPLE_LINE.fullmatch(line):
            raise RejectedFile(
                "parse_error", f"line {number}: {line[:80]!r} is not NAME{{LABELS}} VALUE"
            )


def _check_name(name: str) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise RejectedFile("invalid_name", f"metric name {name!r}")
    if name.startswith(RESERVED_PREFIX):
        raise RejectedFile(
            "reserved_name", f"{name}: names starting with {RESERVED_PREFIX} are observer's"
        )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


@dataclass(frozen=True, slots=True)
class _Version:
    """What identifies one version of a file: if none of it changed, neither did the file."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(slots=True)
class _Source:
    """One metrics file and what was made of its current version."""

    unit: str
    path: Path
    version: _Version | None = None
    families: list[Metric] = field(default_factory=list)
    # Rejections already counted, by version and reason: each is counted once, not per scrape.
    counted: set[tuple[_Version | None, str]] = field(default_factory=set)


class JobMetrics:
    """Reads the jobs' metric files when asked, re-parsing only files that changed.

    Thread-safe: the HTTP server and the textfile writer call ``collect`` from their threads.
    """

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.max_file_bytes = max_file_bytes
        self.rejections: dict[tuple[str, str], int] = {}
        self.files = 0
        self._sources: dict[Path, _Source] = {}
        self._lock = threading.Lock()
        self._listing_failed = False

    def collect(self) -> list[Metric]:
        """The families of every acceptable file, merged by name, each sample with its unit."""
        with self._lock:
            found = self._find()
            for path in [p for p in self._sources if p not in found]:
                del self._sources[path]  # its file is gone: so are its metrics
            for path, unit in found.items():
                source = self._sources.setdefault(path, _Source(unit, path))
                self._refresh(source)
            return self._merge()

    def _find(self) -> dict[Path, str]:
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except FileNotFoundError:
            return {}
        except OSError as e:
            if not self._listing_failed:
                log.error(
                    "cannot list the job metrics directory %s: %s", self.directory, e.strerror
                )
            self._listing_failed = True
            return {}
        self._listing_failed = False
        found: dict[Path, str] = {}
        for entry in entries:
            name = entry.name
            if len(found) >= MAX_FILES:
                break
            if name.startswith("."):
                continue  # writers' temporary files
            if name.endswith(".prom") and len(name) > len(".prom"):
                found[Path(entry.path)] = name.removesuffix(".prom")
            else:
                with contextlib.suppress(OSError):
                    if entry.is_dir():  # follows the symlink systemd makes for DynamicUser=
                        found[Path(entry.path, UNIT_DIRECTORY_FILE)] = name
        return found

    def _refresh(self, source: _Source) -> None:
        read = self._read_source(source)
        if read is None:
            return
        version, data = read
        if version == source.version:
            return
        families = self._parsed(source, version, data)
        if families is None or self._being_written(data, version):
            return
        source.version, source.families, source.counted = version, families, set()

    def _read_source(self, source: _Source) -> tuple[_Version, bytes] | None:
        """The file's version and bytes; None when it is gone (forgotten) or rejected."""
        try:
            version, data = self._read(source.path)
        except FileNotFoundError:
            source.version, source.families = None, []
            return None
        except OSError as e:
            self._reject(source, None, RejectedFile("unreadable", e.strerror or str(e)))
            return None
        if isinstance(data, RejectedFile):
            self._reject(source, version, data)
            return None
        return version, data

    def _parsed(self, source: _Source, version: _Version, data: bytes) -> list[Metric] | None:
        """The file's families; None when it is rejected or looks half-written."""
        try:
            return parse_job_metrics(source.unit, data.decode("utf-8"))
        except UnicodeDecodeError as e:
            self._reject(source, version, RejectedFile("not_utf8", f"bad byte at {e.start}"))
        except RejectedFile as e:
            # A file being written is looked at again at the next collection.
            if not self._being_written(data, version):
                self._reject(source, version, e)
        return None

    def _being_written(self, data: bytes, version: _Version) -> bool:
        """Whether a file looks cut short because its writer has not finished yet."""
        recent = self.clock() - version.mtime_ns / 1e9 < SETTLE_SECONDS
        return recent and not data.endswith(b"\n")

    def _read(self, path: Path) -> tuple[_Version, bytes | RejectedFile]:
        # Never follow a symlink a unit planted, never block on a FIFO, never read a device.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            info = os.lstat(path)
            return _version(info), RejectedFile("not_a_file", "a symbolic link")
        try:
            info = os.fstat(fd)
            version = _version(info)
            if not stat.S_ISREG(info.st_mode):
                return version, RejectedFile("not_a_file", "not a regular file")
            too_large = RejectedFile("too_large", f"more than {self.max_file_bytes} bytes")
            if info.st_size > self.max_file_bytes:
                return version, too_large
            chunks, size = [], 0
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_file_bytes:
                    return version, too_large
            return version, b"".join(chunks)
        finally:
            os.close(fd)

    def _reject(self, source: _Source, version: _Version | None, error: RejectedFile) -> None:
        source.version, source.families = version, []
        self._count(source, error)

    def _count(self, source: _Source, error: RejectedFile) -> None:
        """Count and log a rejection once per version of a file (not at every scrape)."""
        key = (source.version, error.reason)
        if key in source.counted:
            return
        source.counted.add(key)
        label = (source.unit, error.reason)
        self.rejections[label] = self.rejections.get(label, 0) + 1
        log.warning(
            "job metrics %s rejected (%s: %s): the file is left out until it is fixed",
            source.path, error.reason, error.detail,
        )  # fmt: skip

    def _merge(self) -> list[Metric]:
        from prometheus_client.metrics_core import Metric  # noqa: PLC0415

        merged: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        files = 0
        for source in sorted(self._sources.values(), key=lambda s: (s.unit, str(s.path))):
            if not source.families:
                continue
            conflict = _conflict(source.families, merged, seen)
            if conflict is not None:
                self._count(source, conflict)
                continue
            files += 1
            for family in source.families:
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                target.samples.extend(family.samples)
                seen.update(_keys(family.samples))
        self.files = files
        return list(merged.values())


def _version(info: os.stat_result) -> _Version:
    return _Version(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _keys(samples: Iterable[Sample]) -> Iterable[tuple[str, tuple[tuple[str, str], ...]]]:
    return ((s.name, tuple(sorted(s.labels.items()))) for s in samples)


def _conflict(
    families: list[Metric],
    merged: dict[str, Metric],
    seen: set[tuple[str, tuple[tuple[str, str], ...]]],
) -> RejectedFile | None:
    """Why one file's families cannot join the others', if they cannot."""
    for family in families:
        other = merged.get(family.name)
        if other is not None and other.type != family.type:
            return RejectedFile(
                "type_conflict",
                f"{family.name} is a {family.type}, another file has a {other.type}",
            )
        for key in _keys(family.samples):
            if key in seen:
                return RejectedFile("duplicate_series", f"{key[0]} is also in another file")
    return None
