"""Run records: one journal entry per finished run, under observer's own MESSAGE_ID.

Journal shippers carry them to any log system; a central observer (observer/fleet/ingest.py)
takes a run's facts from them, which PID 1's records alone cannot give (the trigger, exact
exit data, what it cost). The field names are stable and documented in docs/fleet.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from observer.bounds import REJECTED, in_range
from observer.model import Run, Source, run_duration_usec

RUN_RECORD_MESSAGE_ID = "71d497fee0e04d0f9551d56b2c22bf21"

# Run's fields written as OBSERVER_<NAME> (upper case); host is the journal's _HOSTNAME.
_INTS = (
    "started_usec",
    "finished_usec",
    "exit_status",
    "restarts",
    "io_read_bytes",
    "io_write_bytes",
    "memory_peak_bytes",
)
_TEXTS: tuple[str, ...] = ("unit", "invocation_id", "source", "result", "exit_code", "trigger")
_TEXTS += ("boot_id", "reason", "start_key")


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """A run record read back from a journal: the run as its own host's observer stored it."""

    run: Run
    output_lines: int | None = None
    output_bytes: int | None = None


def record_fields(
    run: Run, output_lines: int | None = None, output_bytes: int | None = None
) -> dict[str, str]:
    """The journal fields of a finished run's record (MESSAGE and PRIORITY included)."""
    fields = {"MESSAGE_ID": RUN_RECORD_MESSAGE_ID, "MESSAGE": _message(run)}
    fields["PRIORITY"] = "6" if run.succeeded or run.result is None else "4"
    for name in (*_TEXTS, *_INTS):
        value = getattr(run, name)
        if value is not None:
            fields[f"OBSERVER_{name.upper()}"] = str(value)
    if run.cpu_seconds is not None:
        fields["OBSERVER_CPU_SECONDS"] = repr(run.cpu_seconds)
    if (duration := run_duration_usec(run.started_usec, run.finished_usec)) is not None:
        fields["OBSERVER_DURATION_USEC"] = str(duration)
    if output_lines is not None:
        fields["OBSERVER_OUTPUT_LINES"] = str(output_lines)
    if output_bytes is not None:
        fields["OBSERVER_OUTPUT_BYTES"] = str(output_bytes)
    return fields


def _message(run: Run) -> str:
    how = run.result or "unknown"
    if run.exit_code == "exited" and run.exit_status is not None:
        how += f", status {run.exit_status}"
    elif run.exit_code in ("killed", "dumped") and run.exit_status is not None:
        how += f", signal {run.exit_status}"
    if run.trigger:
        how += f", by {run.trigger}"
    return f"{run.unit} finished: {how}"


def _field(entry: Mapping[str, object], name: str) -> str | None:
    value = entry.get(f"OBSERVER_{name.upper()}")
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, int | float):
        value = str(value)
    return value if isinstance(value, str) and value != "" else None


def _int(entry: Mapping[str, object], name: str) -> int | None:
    """A record's integer field, if SQLite can hold it (a host may send anything)."""
    text = _field(entry, name)
    try:
        number = None if text is None else int(text)
    except ValueError:
        return None
    return in_range(number, "fleet", f"OBSERVER_{name.upper()}")


def _seconds(entry: Mapping[str, object], name: str) -> float | None:
    """A record's figure in seconds, if it is a finite number."""
    text = _field(entry, name)
    try:
        seconds = None if text is None else float(text)
    except ValueError:
        return None
    if seconds is not None and not math.isfinite(seconds):
        REJECTED.count("fleet", f"OBSERVER_{name.upper()}", text)
        return None
    return seconds


def parse_record(entry: Mapping[str, object], host: str) -> RunRecord | None:
    """The run a record stands for, on ``host``; None when it is not a usable run record."""
    unit = _field(entry, "unit")
    invocation_id = _field(entry, "invocation_id")
    start_key = _field(entry, "start_key")
    if unit is None or (invocation_id is None and start_key is None):
        return None
    try:
        source = Source(_field(entry, "source") or "journal")
    except ValueError:
        source = Source.JOURNAL
    cpu_seconds = _seconds(entry, "cpu_seconds")
    values: dict[str, object] = {name: _int(entry, name) for name in _INTS}
    values.update((name, _field(entry, name)) for name in _TEXTS if name not in ("unit", "source"))
    run = Run(unit=unit, host=host, source=source, cpu_seconds=cpu_seconds, **values)  # type: ignore[arg-type]
    if run.finished_usec is None:
        return None
    return RunRecord(run, _int(entry, "output_lines"), _int(entry, "output_bytes"))
