"""Prometheus metric families of a metrics ``Snapshot``, and the fast text renderer."""

from __future__ import annotations

import math
import platform
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from observer import __version__
from observer.metrics.snapshot import DURATION_BUCKETS, Durations, Snapshot, UnitState
from observer.model import is_success
from observer.users import unit_of, user_of

# -- collectors ----------------------------------------------------------------------------


def _seconds(usec: int | None) -> float | None:
    return None if usec is None else usec / 1e6


def _unit_labels(key: str) -> list[str]:
    """A stored unit as its labels: unit, and user (empty for a system unit)."""
    return [unit_of(key), user_of(key) or ""]


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class Family(Protocol):
    """What render() reads of a metric family: a prometheus_client Metric is one."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def documentation(self) -> str: ...
    @property
    def samples(self) -> Iterable[Sample]: ...


@dataclass(frozen=True)
class DurationHistograms:
    """observer_run_duration_seconds: a histogram per unit (``series``: its labels and
    counts), whose samples are made as they are read, a unit's at a time, by the client
    library's HistogramMetricFamily. Held whole, 1,000 units' are 16,000 samples in 100,000
    objects, whose memory Python's allocator keeps once they are freed (5 MiB of RSS)."""

    series: tuple[tuple[list[str], Durations], ...]
    name: str = "observer_run_duration_seconds"
    type: str = "histogram"
    documentation: str = (
        "How long runs took (from start to end), for runs that finished while the daemon "
        "was running."
    )

    @property
    def samples(self) -> Iterator[Sample]:
        for labels, counts in self.series:
            unit = HistogramMetricFamily(self.name, self.documentation, labels=_UNIT_LABELS)
            buckets = [*zip(_BOUNDS, map(float, counts.buckets), strict=True)]
            unit.add_metric(labels, buckets, counts.sum_seconds)
            yield from unit.samples


_UNIT_LABELS = ("host", "unit", "user")


def _unit_gauge(
    name: str, documentation: str, keys: list[list[str]], values: Iterable[float | None]
) -> GaugeMetricFamily:
    """A gauge of one sample per unit (``keys``: each unit's labels), None left out."""
    family = _gauge(name, documentation, list(_UNIT_LABELS))
    for key, value in zip(keys, values, strict=True):
        _add(family, key, value)
    return family


def _last_success_flag(state: UnitState) -> float | None:
    if state.last_end_usec is None:
        return None
    return 1.0 if is_success(state.last_result) else 0.0


def _cost(index: int) -> Callable[[UnitState], float | None]:
    return lambda state: state.last_cost[index]


# The gauges of one sample per unit, in the order they are written (the run's info, whose
# labels differ, goes after the first five): name, help, the unit's value (None: none).
_UNIT_GAUGES: tuple[tuple[str, str, Callable[[UnitState], float | None]], ...] = (
    (
        "observer_last_run_start_timestamp_seconds",
        "When the newest finished run of the unit started (seconds since the epoch).",
        lambda state: _seconds(state.last_start_usec),
    ),
    (
        "observer_last_run_end_timestamp_seconds",
        "When the newest finished run of the unit ended (seconds since the epoch).",
        lambda state: _seconds(state.last_end_usec),
    ),
    (
        "observer_last_run_duration_seconds",
        "How long the newest finished run of the unit took.",
        lambda state: state.last_duration_seconds,
    ),
    (
        "observer_last_run_success",
        "1 if the newest finished run of the unit succeeded, else 0.",
        _last_success_flag,
    ),
    (
        "observer_last_run_exit_status",
        "Exit status of the newest finished run's main process (only when it exited).",
        lambda state: state.last_exit_status,
    ),
    *(
        (
            f"observer_last_run_{name}",
            f"{text} of the newest finished run, as systemd accounted it (absent when it did not).",
            _cost(index),
        )
        for index, (name, text) in enumerate(
            (
                ("cpu_seconds", "CPU time"),
                ("io_read_bytes", "Bytes read"),
                ("io_write_bytes", "Bytes written"),
                ("memory_peak_bytes", "Peak memory"),
            )
        )
    ),
    (
        "observer_last_run_output_lost_lines",
        "Output lines of the newest finished run that journald dropped (rate limit).",
        lambda state: state.last_output_lost_lines,
    ),
    (
        "observer_last_success_timestamp_seconds",
        "When the newest successful run of the unit ended (seconds since the epoch).",
        lambda state: _seconds(state.last_success_usec),
    ),
    (
        "observer_last_failure_timestamp_seconds",
        "When the newest failed run of the unit ended (seconds since the epoch).",
        lambda state: _seconds(state.last_failure_usec),
    ),
    (
        "observer_consecutive_failures",
        "Finished runs of the unit that failed since its newest success.",
        lambda state: state.consecutive_failures,
    ),
    (
        "observer_running",
        "1 while a run of the unit is in progress, else 0.",
        lambda state: 1.0 if state.running else 0.0,
    ),
    (
        "observer_running_since_timestamp_seconds",
        "When the run in progress started (seconds since the epoch); only while running.",
        lambda state: _seconds(state.running_since_usec) if state.running else None,
    ),
    (
        "observer_service_restarts",
        "How many times systemd had restarted the unit automatically (NRestarts) by its "
        "newest finished run.",
        lambda state: state.restarts,
    ),
)


class RunCollector:
    """A prometheus_client collector of the run metrics in one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Family]:
        """The families one at a time, each built when asked for: a renderer that writes
        each before asking for the next never holds the samples of them all (at 1,000 units,
        30,000 samples in 140,000 objects, whose memory Python's allocator keeps after)."""
        snap = self.snapshot
        host = snap.host
        keys = [[state.host or host, *_unit_labels(state.unit)] for state in snap.units]
        for name, documentation, value in _UNIT_GAUGES[:5]:
            yield _unit_gauge(name, documentation, keys, map(value, snap.units))
        last_info = _gauge(
            "observer_last_run_info",
            "The newest finished run's result (systemd's Result) and the signal that ended it.",
            [*_UNIT_LABELS, "result", "signal"],
        )
        for key, state in zip(keys, snap.units, strict=True):
            if state.last_end_usec is not None:
                last_info.add_metric(
                    [*key, state.last_result or "unknown", state.last_signal or ""], 1.0
                )
        yield last_info
        for name, documentation, value in _UNIT_GAUGES[5:]:
            yield _unit_gauge(name, documentation, keys, map(value, snap.units))
        yield from self._runs(host)
        yield from self._timers(host)
        yield from self._alerts(host)

    def _alerts(self, host: str) -> Iterator[Metric]:
        counts = self.snapshot.alerts
        if counts is None:
            return
        made = CounterMetricFamily(
            "observer_alerts",
            "Alerts recorded (and kept, as long as runs are), by unit and kind.",
            labels=["host", "unit", "kind"],
        )
        for (on, unit, kind), n in sorted(counts.made.items()):
            made.add_metric([on or host, unit, kind], n)
        opened = _gauge(
            "observer_alert_open",
            "1 for each open alert problem of a unit: failing, missed, stale, rate, slower.",
            ["host", "unit", "kind"],
        )
        for (on, unit), kinds in sorted(counts.open.items()):
            for kind in kinds:
                opened.add_metric([on or host, unit, kind], 1)
        failed = CounterMetricFamily(
            "observer_alert_deliveries_failed",
            "Failed attempts to deliver an alert, by channel (scheme and host only).",
            labels=["host", "channel"],
        )
        for channel, n in sorted(counts.failed_attempts.items()):
            failed.add_metric([host, channel], n)
        yield from (made, opened, failed)

    def _runs(self, host: str) -> Iterator[Family]:
        snap = self.snapshot
        runs = CounterMetricFamily(
            "observer_runs",
            "Runs that finished while the daemon was running, by systemd's result.",
            labels=["host", "unit", "user", "result"],
        )
        for (on, unit, result), count in sorted(_with_zeros(snap).items()):
            runs.add_metric([on or host, *_unit_labels(unit), result], count)
        yield runs
        empty = Durations((0,) * len(DURATION_BUCKETS), 0.0)
        every = {(state.host, state.unit): empty for state in snap.units}
        yield DurationHistograms(
            tuple(
                ([on or host, *_unit_labels(unit)], counts)
                for (on, unit), counts in sorted((every | dict(snap.durations)).items())
            )
        )

    def _timers(self, host: str) -> Iterator[Metric]:
        labels = ["host", "unit", "user", "timer"]
        next_trigger = _gauge(
            "observer_timer_next_trigger_timestamp_seconds",
            "When the timer starts the unit next (seconds since the epoch); absent when it "
            "is not scheduled.",
            labels,
        )
        last_trigger = _gauge(
            "observer_timer_last_trigger_timestamp_seconds",
            "When the timer last started the unit (seconds since the epoch).",
            labels,
        )
        for timer in self.snapshot.timers:
            key = [host, *_unit_labels(timer.unit), unit_of(timer.timer)]
            _add(next_trigger, key, _seconds(timer.next_usec))
            _add(last_trigger, key, _seconds(timer.last_usec))
        yield next_trigger
        yield last_trigger


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)


# Each bucket's upper bound as its `le` label writes it.
_BOUNDS = tuple("+Inf" if math.isinf(bound) else repr(bound) for bound in DURATION_BUCKETS)


@dataclass(frozen=True, slots=True)
class DaemonHealth:
    """The daemon's own counters, as read on the event loop."""

    events_processed: int = 0
    runs_recorded: int = 0
    store_errors: int = 0
    store_writable: bool = True
    unattributed_lines: int = 0
    lost_lines: int = 0
    last_event_at: float | None = None
    journal_position_usec: int | None = None
    journal_lag_seconds: float = 0.0
    refresh_at: float | None = None
    refresh_seconds: float | None = None
    refresh_errors: int = 0
    journal_vacuumed_seconds: float = 0.0


class DaemonCollector:
    """A prometheus_client collector of the daemon's own health."""

    def __init__(self, host: str, health: DaemonHealth) -> None:
        self.host = host
        self.health = health

    def collect(self) -> Iterator[Metric]:
        h, host = self.health, [self.host]
        info = _gauge("observer_build_info", "Always 1: the running observer's version.", [
            "host", "version", "python_version",
        ])  # fmt: skip
        info.add_metric([self.host, __version__, platform.python_version()], 1.0)
        yield info
        yield _counter(
            "observer_events_processed",
            "Bus and journal events the daemon processed.",
            host,
            h.events_processed,
        )
        yield _counter(
            "observer_runs_recorded", "Runs the daemon recorded as finished.", host, h.runs_recorded
        )
        yield _counter(
            "observer_store_errors",
            "Writes to the database that failed (kept in memory and retried).",
            host,
            h.store_errors,
        )
        writable = _gauge(
            "observer_store_writable",
            "1 while the database takes the daemon's writes; 0 while they fail (full, locked, "
            "lost): runs wait in the journal and are recorded when it takes them again.",
            ["host"],
        )
        writable.add_metric(host, 1.0 if h.store_writable else 0.0)
        yield writable
        yield _counter(
            "observer_unattributed_output_lines",
            "Output lines that could not be attributed to a run.",
            host,
            h.unattributed_lines,
        )
        yield _counter(
            "observer_output_lost_lines",
            "Output lines of observed units that journald dropped (its rate limit) before "
            "they reached observer.",
            host,
            h.lost_lines,
        )
        yield _counter(
            "observer_journal_vacuumed_seconds",
            "Journal history vacuumed before the daemon read it (its runs are not recorded).",
            host,
            h.journal_vacuumed_seconds,
        )
        lag = _gauge(
            "observer_journal_lag_seconds",
            "How far the daemon trails the journal: age of the last entry processed while "
            "more wait, 0 when caught up.",
            ["host"],
        )
        lag.add_metric(host, h.journal_lag_seconds)
        yield lag
        position = _gauge(
            "observer_journal_position_timestamp_seconds",
            "When journald received the last journal entry the daemon processed.",
            ["host"],
        )
        _add(position, host, _seconds(h.journal_position_usec))
        yield position
        last_event = _gauge(
            "observer_last_event_timestamp_seconds",
            "When the daemon last processed a bus or journal event (to within a few seconds).",
            ["host"],
        )
        _add(last_event, host, h.last_event_at)
        yield last_event
        refreshed = _gauge(
            "observer_metrics_refresh_timestamp_seconds",
            "When the run metrics were last read from the database.",
            ["host"],
        )
        _add(refreshed, host, h.refresh_at)
        yield refreshed
        took = _gauge(
            "observer_metrics_refresh_duration_seconds",
            "How long the last reading of the run metrics from the database took.",
            ["host"],
        )
        _add(took, host, h.refresh_seconds)
        yield took
        yield _counter(
            "observer_metrics_refresh_errors",
            "Readings of the run metrics from the database that failed.",
            host,
            h.refresh_errors,
        )


def render(families: Iterable[Family]) -> bytes:
    """The text format (0.0.4) of families whose names observer chose itself.

    What generate_latest writes, three times faster: it need not check or escape metric and
    label names, which matters with thousands of units.
    """
    return "".join(map(_family_text, families)).encode()


def render_gzip(families: Iterable[Family], level: int) -> bytes:
    """``render(families)`` as one gzip member, compressed a family at a time: the text of
    1,000 units' run metrics (2.7 MiB of it, in 30,000 lines) is never whole in memory."""
    packer = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    out = [packer.compress(_family_text(family).encode()) for family in families]
    out.append(packer.flush())
    return b"".join(out)


# zlib's window bits for a gzip member (header and trailer) with the largest window.
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _family_text(family: Family) -> str:
    name = f"{family.name}_total" if family.type == "counter" else family.name
    kind = "untyped" if family.type == "unknown" else family.type
    documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out = [f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"]
    for sample in family.samples:
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
        value = _number(sample.value)
        out.append(f"{sample.name}{{{labels}}} {value}\n" if labels else f"{sample.name} {value}\n")
    return "".join(out)


def _number(value: float) -> str:
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _counter(name: str, documentation: str, host: list[str], value: float) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=["host"])
    family.add_metric(host, value)
    return family


# Results each known unit's run counter shows from the start, at 0 before its first such run
# (besides its newest run's): rate() and increase() then see that first run.
ZERO_RESULTS = ("success", "exit-code")


def _with_zeros(snap: Snapshot) -> dict[tuple[str, str, str], int]:
    """The runs counted by (host, unit, result), with 0 for each unit the store knows and the
    results it most likely ends with next."""
    counts = {
        (state.host, state.unit, result): 0
        for state in snap.units
        for result in (*ZERO_RESULTS, state.last_result or "unknown")
    }
    counts.update(snap.runs_by_result)
    return counts
