"""Fuzzing of the parsers of outside input people write: observer.toml, jobs.toml, crontabs.

Each parser either returns a value or raises ConfigError whose message names the file;
no other exception escapes. Documents are built as TOML text here (no TOML writer is a
dependency): the keys each parser knows, with values of any type, huge numbers, NaN,
unicode, empty strings and tables where scalars belong. A crash found becomes a named test
in test_config_regressions.py.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from observer.alert_config import UNIT_KEYS, AlertRules
from observer.config import _SECTIONS, load_config
from observer.jobs import crontab
from observer.jobs.jobfile import KEYS, load_file
from observer.jobs.sandbox import breakages
from observer.jobs.units import render
from observer.model import ConfigError

T = TypeVar("T")
# Deterministic in CI and quick: each test well under 10 s.
FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- TOML values and documents, written as text ---------------------------------------------


class _Raw(str):
    """TOML text written as is (a date or a time, which have no Python literal here)."""


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_scalars = st.one_of(
    _text,
    st.sampled_from(["", " ", "0", "90s", "1h30m", "every 5m", "*/5 * * * *", "@daily", "/",
                     "/var/tmp/x", "08:00", "25:99", "x > 1e9", "(", "%n", "$HOME", "a\nb"]),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(max_value=-(2**63) + 2, min_value=-(2**70)),
    st.sampled_from([10**400, -(10**400), 2**64, -1, 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1" * 5000]).map(_Raw),
)  # fmt: skip


def toml_key(key: str) -> str:
    """``key`` as a quoted TOML key."""
    return json.dumps(key, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: object) -> str:
    """``value`` as a TOML value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Raw | int):
        return str(value)
    if isinstance(value, float):
        return _toml_float(value)
    if isinstance(value, str):
        return toml_key(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def _toml_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)


def _check_written(text: str) -> None:
    """The document is valid TOML, so that any error is the parser's to report."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise
    except ValueError:  # an integer of 5000 digits: the parser's to refuse
        pass


def _read(read: Callable[[Path], T], path: Path) -> T | None:
    """What ``read`` returns, or None when it refused ``path`` with a ConfigError naming it."""
    try:
        return read(path)
    except ConfigError as e:
        refused = str(e)
    assert refused.startswith(str(path)), refused
    return None


def values(keys: list[str]) -> st.SearchStrategy[object]:
    """Any value: a scalar, a list, or a table of known (or unknown) keys."""
    return st.recursive(
        _scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(keys) | _text, inner, max_size=4),
        ),
        max_leaves=8,
    )


def tables(keys: list[str], extra: st.SearchStrategy[object] | None = None) -> st.SearchStrategy:
    """A table of the known ``keys`` (mostly) with any values."""
    value = values(keys) if extra is None else values(keys) | extra
    return st.dictionaries(st.sampled_from(keys) | _text, value, max_size=6)


def document(data: dict[str, object]) -> str:
    """A TOML document: scalars first, then each table as a ``[header]`` of its own."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not _is_table(v)]
    for key, table in data.items():
        if _is_table(table):
            assert isinstance(table, dict)
            lines.append(f"[{toml_key(key)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _is_table(value: object) -> bool:
    return isinstance(value, dict)


# -- observer.toml ------------------------------------------------------------------------------

_SECTION_KEYS = {name: list(cls._fields) for name, cls in _SECTIONS.items() if name != "alerts"}
_ALERT_KEYS = sorted(set(AlertRules._fields) | UNIT_KEYS | {
    "units", "heartbeat_url", "heartbeat_url_credential", "heartbeat_url_file",
    "heartbeat_interval", "check_interval", "send_timeout", "retry_delay", "max_attempts",
    "output_lines", "digest_at",
})  # fmt: skip
_unit_tables = st.dictionaries(
    st.sampled_from(["backup.service", "*.service", ""]) | _text,
    tables(sorted(UNIT_KEYS)) | _scalars,
    max_size=3,
)
_alerts = st.builds(
    lambda table, units: table if units is None else {**table, "units": units},
    tables(_ALERT_KEYS),
    st.none() | _unit_tables,
)
_any_value = values(["x"])
_config = st.builds(
    lambda unknown, known: {**unknown, **known},
    st.dictionaries(_text, _any_value, max_size=1),
    st.fixed_dictionaries(
        {},
        optional={
            "host": _any_value,
            "alerts": _alerts | _scalars,
            **{name: tables(keys) | _scalars for name, keys in _SECTION_KEYS.items()},
        },
    ),
)


def _config_file(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "observer.toml"
    text = document(data)
    _check_written(text)
    path.write_text(text, encoding="utf-8")
    return path


@FUZZ
@given(_config)
def test_observer_toml_is_read_or_refused_with_a_config_error(
    tmp_path: Path, data: dict[str, object]
) -> None:
    path = _config_file(tmp_path, data)
    config = _read(load_config, path)
    assert config is None or all(
        -(2**63) <= n < 2**63 for n in _whole_numbers(config)
    )  # SQLite holds each


def _whole_numbers(value: object) -> list[int]:
    """Every int in a (nested) config record (a NamedTuple), tuple or list."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, tuple | list):
        return [n for v in value for n in _whole_numbers(v)]
    return []


@FUZZ
@given(_alerts)
def test_every_alerts_table_is_read_or_refused_with_a_config_error(
    tmp_path: Path, alerts: dict[str, object]
) -> None:
    path = _config_file(tmp_path, {"alerts": alerts})
    config = _read(load_config, path)
    assert config is None or all(0 <= n < 2**63 for n in _whole_numbers(config.alerts))


# -- jobs.toml ---------------------------------------------------------------------------------

_job_core = st.fixed_dictionaries(
    {},
    optional={
        "command": st.sampled_from(["/var/tmp/x > /etc/y", "certbot renew"])
        | st.lists(_text, max_size=3)
        | _any_value,
        "schedule": st.sampled_from(["daily", "*/5 * * * *", "every 90m", "@reboot", "61 * * * *"])
        | st.lists(_text, max_size=2)
        | _any_value,
        "alerts": tables(sorted(UNIT_KEYS)) | _scalars,
    },
)
_job_table = st.builds(lambda rest, core: {**rest, **core}, tables(sorted(KEYS)), _job_core)


@FUZZ
@given(st.dictionaries(st.sampled_from(["backup", "a b", "x.service", ""]) | _text, _job_table,
                       max_size=3))  # fmt: skip
def test_jobs_toml_is_read_or_refused_with_a_config_error(
    tmp_path: Path, jobs: dict[str, object]
) -> None:
    path = tmp_path / "jobs.toml"
    text = _jobs_document(jobs)
    _check_written(text)
    path.write_text(text, encoding="utf-8")
    for job in (
        _read(load_file, path) or []
    ):  # what `check` and `apply` do next with a job that was read
        render(job, str(path))
        breakages(job)


def _jobs_document(jobs: dict[str, object]) -> str:
    """``[jobs."NAME"]`` tables, each key on a line of its own."""
    lines = []
    for name, table in jobs.items():
        assert isinstance(table, dict)
        lines.append(f"[jobs.{toml_key(name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# -- crontabs ---------------------------------------------------------------------------------

_field = st.one_of(
    st.sampled_from(["*", "*/5", "0", "59", "60", "99", "-1", "5-1", "1-5/0", "*/0", "jan",
                     "MON-FRI", "L", "1W", "2#3", "7", "8", "32", "13", "1,2,3",
                     "99999999999999999999",
                     ",", "/", "-", "?"]),
    st.integers(min_value=-5, max_value=2**70).map(str),
)  # fmt: skip
_command = st.one_of(
    st.sampled_from(["/usr/local/bin/backup --full", "certbot renew", "date +\\%H% in%put",
                     "cd /var/tmp/x && ./run", "echo 'unclosed > /etc/x", "%", "\\", "",
                     "/var/tmp/probe.sh > /etc/out 2>&1", "run-parts /etc/cron.daily"]),
    _text,
)  # fmt: skip
_cron_line = st.one_of(
    st.builds(lambda f, c: f"{' '.join(f)} {c}", st.lists(_field, min_size=5, max_size=5),
              _command),
    st.builds(lambda f, u, c: f"{' '.join(f)}\t{u}\t{c}", st.lists(_field, min_size=5, max_size=5),
              st.sampled_from(["root", "www-data", "bad$user", "", "0"]) | _text, _command),
    st.builds(lambda n, c: f"{n} {c}", st.sampled_from(["@daily", "@reboot", "@hourly", "@yearly",
              "@annually", "@midnight", "@weekly", "@monthly", "@every", "@", "@DAILY"]), _command),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["MAILTO", "SHELL", "PATH", "BORG_REPO",
              "A", "1X"]) | _text, _text | st.just("'quoted'") | st.just('"q')),
    st.sampled_from(["", "# a comment", "   ", "nonsense line", "\t"]),
    _text,
)  # fmt: skip


@FUZZ
@given(st.lists(_cron_line, max_size=8), st.booleans())
def test_a_crontab_converts_to_toml_that_reads_or_is_refused_with_a_config_error(
    tmp_path: Path, lines: list[str], system: bool
) -> None:
    converted = crontab.to_jobs_file("\n".join(lines), system=system, source="crontab -l")
    tomllib.loads(converted)  # what it writes is TOML, whatever it was given
    path = tmp_path / "jobs.toml"
    path.write_text(converted, encoding="utf-8")
    _read(load_file, path)
