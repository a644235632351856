"""Fuzzing of the parsers of input from outside that no person writes: journal entries (a
host's own and those a fleet's hosts send), D-Bus property values, job metrics files, spool
files, and the exporter web configuration.

Each parser returns a value or raises its documented error, and what it returns can be
stored: runs go through the correlator (or as they are, for run records and spooled runs)
into `write_batch` on a temporary SQLite database, which must take them. The configuration
files people write are fuzzed in test_fuzz_config.py, in the same way.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from dbus_fast import Message, Variant
from hypothesis import given
from hypothesis import strategies as st

from observer.fleet.ingest import parse_fleet_entry
from observer.fleet.records import RUN_RECORD_MESSAGE_ID, RunRecord
from observer.metrics.job_metrics import RejectedFile, parse_job_metrics
from observer.model import ConfigError
from observer.recording.bus import PROPERTIES, BusError, SystemdBus, decode_signal
from observer.recording.correlator import Correlator
from observer.recording.effects import RecordRun, RecordTimer
from observer.recording.events import Event
from observer.recording.journal import (
    MESSAGE_KINDS,
    SUPPRESSED_MESSAGE_ID,
    SYSTEM_ONLY,
    parse_entry,
)
from observer.run import spool
from observer.store.database import Batch, open_for_writing, write_batch
from observer.web_config import load_web_config
from tests.unit.test_fuzz_config import FUZZ, toml_key

HOST = "web1"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """One temporary database for every example (each writes its own runs)."""
    conn = open_for_writing(tmp_path_factory.mktemp("fuzz") / "observer.db")
    yield conn
    conn.close()


def stored(conn: sqlite3.Connection, events: list[Event]) -> None:
    """Feed ``events`` to a correlator and write every run and timer it records."""
    correlator = Correlator(HOST)
    batch = Batch()
    for event in events:
        for effect in correlator.feed(event):
            if isinstance(effect, RecordRun):
                batch.runs.append(effect.run)
            elif isinstance(effect, RecordTimer):
                batch.timers.append(effect.timer)
    write_batch(conn, batch)


# -- journal entries ------------------------------------------------------------------------

_huge = st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -1, 0])
_numbers = st.integers(min_value=-(2**70), max_value=2**70) | _huge
_raw = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(str.encode),
    _numbers.map(lambda n: str(n).encode()),
    _numbers,
    st.sampled_from([b"", b"-", b"0x10", b"1e9", b"nan", b"\xff\xfe", b"4294967296", b" 7 "]),
)
_message_ids = st.sampled_from([*MESSAGE_KINDS, SUPPRESSED_MESSAGE_ID, RUN_RECORD_MESSAGE_ID])
_ids = st.sampled_from(["0123456789abcdef0123456789abcdef", "", "not-hex", "ab" * 40])
_units = st.sampled_from(["backup.service", "a.timer", "user@1000.service", "x", "", "/"])
_KNOWN = {
    "_PID": st.sampled_from([b"1", b"4242", 1]) | _raw,
    "MESSAGE_ID": _message_ids.map(str.encode) | _raw,
    "UNIT": _units.map(str.encode) | _raw,
    "USER_UNIT": _units.map(str.encode) | _raw,
    "_SYSTEMD_UNIT": _units.map(str.encode) | _raw,
    "_SYSTEMD_USER_UNIT": _units.map(str.encode) | _raw,
    "INVOCATION_ID": _ids.map(str.encode) | _raw,
    "USER_INVOCATION_ID": _ids.map(str.encode) | _raw,
    "_SYSTEMD_INVOCATION_ID": _ids.map(str.encode) | _raw,
    "OBJECT_SYSTEMD_INVOCATION_ID": _ids.map(str.encode) | _raw,
    "MESSAGE": st.sampled_from(
        [
            b"Started backup.service.",
            b"Suppressed 99999999999999999999 messages from backup.service",
            b"Condition check resulted in x being skipped.",
        ]
    )
    | _raw,
    **{
        name: _raw
        for name in (
            "EXIT_STATUS",
            "EXIT_CODE",
            "N_RESTARTS",
            "JOB_ID",
            "JOB_RESULT",
            "JOB_TYPE",
            "UNIT_RESULT",
            "CPU_USAGE_NSEC",
            "IO_METRIC_READ_BYTES",
            "IO_METRIC_WRITE_BYTES",
            "MEMORY_PEAK",
            "N_DROPPED",
            "PRIORITY",
            "USERSPACE_USEC",
            "_UID",
            "_TRANSPORT",
            "CODE_FUNC",
            "_BOOT_ID",
            "__MONOTONIC_TIMESTAMP",
        )
    },
    "__REALTIME_TIMESTAMP": st.integers(min_value=1, max_value=2**62) | _raw,
}
_entries = st.fixed_dictionaries({}, optional=_KNOWN)


@FUZZ
@given(st.lists(_entries, max_size=6))
def test_journal_entries_parse_to_events_whose_runs_the_store_takes(
    store: sqlite3.Connection, entries: list[dict[str, object]]
) -> None:
    events = [event for entry in entries if (event := parse_entry(entry)) is not None]
    stored(store, [cast(Event, e) for e in events if not hasattr(e, "stream")])


_run_record = st.fixed_dictionaries(
    {
        "MESSAGE_ID": st.just(RUN_RECORD_MESSAGE_ID.encode()),
        "OBSERVER_UNIT": _units.map(str.encode) | _raw,
        "OBSERVER_INVOCATION_ID": _ids.map(str.encode) | _raw,
        "OBSERVER_FINISHED_USEC": _raw,
    },
    optional={
        f"OBSERVER_{name.upper()}": _raw
        for name in ("started_usec", "exit_status", "restarts", "io_read_bytes",
                     "io_write_bytes", "memory_peak_bytes", "cpu_seconds", "source", "result",
                     "exit_code", "trigger", "boot_id", "reason", "start_key", "output_lines",
                     "output_bytes")
    },
)  # fmt: skip
_place = st.fixed_dictionaries(
    {
        "_HOSTNAME": st.sampled_from([b"web2", b""]) | _raw,
        "__MONOTONIC_TIMESTAMP": st.integers(min_value=0, max_value=2**64) | _raw,
        "__CURSOR": st.sampled_from([b"s=1;i=2;b=3;m=4;t=5;x=6", b"x=", b";;", b"=x=y"]) | _raw,
    },
    optional={"_BOOT_ID": _raw},
)


@FUZZ
@given(st.lists(st.tuples(_place, _entries | _run_record), max_size=4))
def test_entries_a_fleet_host_sends_parse_to_runs_the_store_takes(
    store: sqlite3.Connection, received: list[tuple[dict[str, object], dict[str, object]]]
) -> None:
    batch = Batch()
    for place, entry in received:
        fleet_entry = parse_fleet_entry({**entry, **place}, SYSTEM_ONLY)
        if fleet_entry is not None and isinstance(fleet_entry.event, RunRecord):
            batch.records.append(fleet_entry.event.run)
    write_batch(store, batch)


# -- D-Bus property values -----------------------------------------------------------------

# A value of every D-Bus type systemd's properties have, and some they never have.
_VARIANTS = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1).map(lambda n: Variant("t", n)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda n: Variant("x", n)),
    st.integers(min_value=0, max_value=2**32 - 1).map(lambda n: Variant("u", n)),
    st.integers(min_value=-(2**31), max_value=2**31 - 1).map(lambda n: Variant("i", n)),
    st.booleans().map(lambda b: Variant("b", b)),
    st.floats(allow_nan=True).map(lambda f: Variant("d", f)),
    st.text(max_size=20).map(lambda s: Variant("s", s)),
    st.sampled_from(["active", "inactive", "failed", "activating", "exited", "dead", "success",
                     "exit-code", "start", "", "restart"]).map(lambda s: Variant("s", s)),
    st.binary(max_size=20).map(lambda b: Variant("ay", b)),
    st.lists(st.text(max_size=5), max_size=3).map(lambda v: Variant("as", v)),
    st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=2).map(
        lambda v: Variant("a(ss)", [list(p) for p in v])
    ),
    st.just(Variant("(uo)", [7, "/org/freedesktop/systemd1/job/7"])),
)  # fmt: skip
_READ = ["ActiveState", "SubState", "Result", "InvocationID", "ExecMainCode", "ExecMainStatus",
         "ExecMainStartTimestamp", "ExecMainExitTimestamp", "InactiveEnterTimestamp",
         "InactiveExitTimestamp", "StateChangeTimestamp", "NRestarts", "Unit", "LastTriggerUSec",
         "NextElapseUSecRealtime", "NextElapseUSecMonotonic", "Job", "ActivationDetails",
         "CPUUsageNSec", "IOReadBytes", "IOWriteBytes", "MemoryPeak", "JobType"]  # fmt: skip
_properties = st.dictionaries(st.sampled_from(_READ), _VARIANTS, max_size=8)
_changed = st.tuples(
    st.sampled_from(["backup_2eservice", "a_2etimer", "x", "bad_zz"]),
    st.sampled_from(["Unit", "Service", "Timer", "Socket"]),
    _properties,
)


def _signal(path_name: str, interface: str, values: dict[str, Variant]) -> Message:
    return Message(
        path=f"/org/freedesktop/systemd1/unit/{path_name}",
        interface=PROPERTIES,
        member="PropertiesChanged",
        signature="sa{sv}as",
        body=[f"org.freedesktop.systemd1.{interface}", values, []],
    )


@FUZZ
@given(st.lists(_changed, max_size=6))
def test_property_values_decode_to_events_whose_runs_the_store_takes(
    store: sqlite3.Connection, signals: list[tuple[str, str, dict[str, Variant]]]
) -> None:
    events = [event for s in signals if (event := decode_signal(_signal(*s))) is not None]
    stored(store, events)


class _Replies(SystemdBus):
    """A bus whose calls are answered with the values given (no connection)."""

    def __init__(self, replies: list[list[Any]]) -> None:
        super().__init__(None, lambda event: None)
        self.replies = replies

    async def _send_call(self, *args: object) -> list[Any]:
        reply = self.replies.pop(0)
        if isinstance(reply, BusError):
            raise reply
        return reply


_invocation = st.one_of(
    st.just(Variant("ay", bytes.fromhex("0123456789abcdef0123456789abcdef"))),
    _VARIANTS,
    st.lists(st.integers(min_value=-5, max_value=300), max_size=4).map(lambda v: Variant("ai", v)),
)


# A cost figure as systemd answers a Get of it: any value, or an error (MemoryPeak before 255).
_figure = st.one_of(
    _VARIANTS.map(lambda value: [value]),
    st.just(BusError("org.freedesktop.DBus.Error.UnknownProperty", "Unknown property")),
)


@FUZZ
@given(_invocation, st.lists(_figure, min_size=4, max_size=4), _properties)
def test_a_runs_cost_and_its_jobs_details_decode_to_what_the_store_takes(
    store: sqlite3.Connection,
    invocation: Variant,
    figures: list[Any],
    job: dict[str, Variant],
) -> None:
    bus = _Replies([[invocation], *figures])
    cost = asyncio.run(bus.run_cost("backup.service", "0123456789abcdef0123456789abcdef", HOST))
    write_batch(store, Batch(runs=[] if cost is None else [cost]))
    details = asyncio.run(_Replies([[job]]).job_details(7, "backup.service"))
    stored(store, [details])


def test_the_cost_beside_an_invocation_id_that_is_not_bytes_is_not_kept() -> None:
    """Found by the fuzzing above: an InvocationID of strings raised TypeError in bytes()."""
    figure = [Variant("t", 2_000_000_000)]
    bus = _Replies([[Variant("(uo)", [7, "/org/freedesktop/systemd1/job/7"])], *[figure] * 4])
    invocation_id = "0123456789abcdef0123456789abcdef"
    assert asyncio.run(bus.run_cost("backup.service", invocation_id, HOST)) is None
    assert bus.replies == []


# -- job metrics files ---------------------------------------------------------------------

_metric_lines = st.one_of(
    st.sampled_from([
        "# HELP backup_bytes Bytes.", "# TYPE backup_bytes gauge", "# TYPE backup_bytes counter",
        "backup_bytes 1e400", "backup_bytes NaN", "backup_bytes{path=\"/\"} -Inf",
        'backup_bytes{unit="x"} 1', "backup_bytes 1 99999999999999999999999",
        "backup_total 3", "backup_created 1", "x{a=\"\\\"} 1", "# EOF", "", "{} 1", "9x 1",
        "backup_bytes{a=\"1\",a=\"2\"} 1", "h_bucket{le=\"+Inf\"} 1", "# TYPE h histogram",
    ]),
    st.text(max_size=40),
)  # fmt: skip


@FUZZ
@given(st.lists(_metric_lines, max_size=10))
def test_a_job_metrics_file_is_read_or_rejected_with_a_reason(lines: list[str]) -> None:
    try:
        families = parse_job_metrics("backup.service", "\n".join(lines) + "\n")
    except RejectedFile:
        return
    for family in families:
        assert all(sample.labels["unit"] == "backup.service" for sample in family.samples)


# -- spool files ---------------------------------------------------------------------------


def _spooled(run: dict[str, object], lines: list[object], extra: dict[str, object]) -> bytes:
    document = {
        "format": spool.SPOOL_FORMAT,
        "db": "/var/lib/observer/observer.db",
        "run": run,
        "lines": lines,
        "counts": None,
        "timer": None,
        "metrics": None,
    }
    document.update(extra)
    return json.dumps(document).encode()


_json_values = st.recursive(
    st.none() | st.booleans() | _numbers | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip
_run_fields = st.fixed_dictionaries(
    {"unit": st.just("backup.service") | _json_values,
     "invocation_id": st.just("0123456789abcdef0123456789abcdef") | _json_values,
     "host": st.just(HOST) | _json_values,
     "source": st.sampled_from(["wrapper", "journal", "nope"]) | _json_values},
    optional={name: _json_values | _numbers for name in (
        "started_usec", "finished_usec", "result", "exit_code", "exit_status", "restarts",
        "cpu_seconds", "io_read_bytes", "memory_peak_bytes", "trigger", "unknown_field")},
)  # fmt: skip
_line = st.one_of(
    st.tuples(
        _numbers, _numbers, _numbers, st.sampled_from([None, "stdout", 3]), st.just("aGk=")
    ).map(list),
    _json_values,
)
_extra = st.fixed_dictionaries(
    {},
    optional={"counts": _json_values, "timer": _json_values, "metrics": _json_values,
              "db": _json_values, "format": _json_values},
)  # fmt: skip


@FUZZ
@given(_run_fields, st.lists(_line, max_size=3), _extra)
def test_a_spool_file_decodes_to_a_run_the_store_takes_or_is_set_aside(
    store: sqlite3.Connection,
    run: dict[str, object],
    lines: list[object],
    extra: dict[str, object],
) -> None:
    try:
        _, record = spool.decode(_spooled(run, lines, extra))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return  # what import_spooled catches: the file is set aside
    with store:  # the importer's own write (spool.write_record) in a transaction of its own
        spool.write_record(store, record)


# -- the exporter web configuration ---------------------------------------------------------

_web_keys = ["tls_server_config", "basic_auth_users", "http_server_config", "cert_file",
             "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
             "cipher_suites", "prometheus", "headers", "http2"]  # fmt: skip
_yaml_scalars = st.one_of(
    st.sampled_from(["", "~", "yes", "0o17", "1e999", ".nan", "'$2b$12$abc'", "[", "{", "&a",
                     "*a", "!!binary aGk=", "!!python/object:os.system x", "cert.pem",
                     "/nonexistent/key.pem", "RequireAndVerifyClientCert", "TLS13", "- x"]),
    st.integers().map(str),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=15).map(toml_key),
)  # fmt: skip


def _yaml(data: object, indent: int = 0) -> str:
    """A YAML document of nested mappings and scalars written as they come (any may be
    invalid YAML: the parser's to refuse)."""
    pad = " " * indent
    if not isinstance(data, dict):
        return f"{pad}{data}\n"
    text = ""
    for key, value in data.items():
        if isinstance(value, dict):
            text += f"{pad}{key}:\n" + _yaml(value, indent + 2)
        else:
            text += f"{pad}{key}: {value}\n"
    return text


_web_documents = st.recursive(
    _yaml_scalars,
    lambda inner: st.dictionaries(st.sampled_from(_web_keys) | _yaml_scalars, inner, max_size=4),
    max_leaves=8,
)


@FUZZ
@given(_web_documents)
def test_a_web_configuration_is_read_or_refused_with_a_config_error(
    tmp_path: Path, document: object
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(_yaml(document), encoding="utf-8")
    refused = None
    try:
        load_web_config(path)
    except ConfigError as e:
        refused = str(e)
    assert refused is None or str(path) in refused
