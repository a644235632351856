"""What a command imports: the entry point parses and dispatches before any heavy import.

A structural test, not a timed one: it runs `python -m observer CMD` in a subprocess and
looks at the modules loaded when the command ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from observer.__main__ import _LAZY_COMMANDS
from tests.unit.recorded_runs import write_store

# What no reading command, no `observer run` and no `--version` may load: the daemon's event
# loop, TLS, the dashboard's templates, the alerts' senders, D-Bus, the metrics library, the
# journal reader.
FORBIDDEN = (
    "asyncio", "ssl", "jinja2", "apprise", "dbus_fast", "prometheus_client", "systemd",
    "systemd.journal",
)  # fmt: skip

# What a listing (history, runs, status, stats) may not load: the definitions of runs and
# their diffs (hashlib, shlex, difflib: show, last-failure and diff print them), the
# recording side's event classes, what a migration alone needs (socket, decimal), what only
# an unreadable database's message needs (grp), and what only a glob needs (re), JSON, or
# following runs (pathlib). A span (--since) is read by hand: neither re nor decimal.
NOT_FOR_LISTINGS = (
    "observer.reading.changes", "observer.recording.definitions", "observer.store.definitions",
    "observer.recording.events", "hashlib", "shlex", "difflib", "socket", "decimal", "grp",
    "re", "fnmatch", "json", "pathlib", "urllib.parse",
)  # fmt: skip

# What no reading command loads on an ordinary command line (parsed without argparse), nor
# --version: each is a good part of a command's start.
NOT_FOR_READING = ("argparse", "gettext", "dataclasses", "inspect", "typing", "shutil")

# Runs the entry point as `python -m observer` does, then reports sys.modules on stderr (json
# is imported after: it would load re). What the interpreter's start loaded of the modules
# watched (a venv's .pth file may import re and pathlib) is forgotten first: a command that
# imports one loads it again.
PROBE = """
import runpy, sys
for name in ("re", "fnmatch", "json", "pathlib", "urllib.parse", "typing", "dataclasses"):
    sys.modules.pop(name, None)
sys.argv = ["observer", *sys.argv[1:]]
try:
    runpy.run_module("observer", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
else:
    code = 0
modules = sorted(sys.modules)
import json
print("MODULES " + json.dumps({"code": code, "modules": modules}), file=sys.stderr)
"""


def modules_of(argv: list[str], env: dict[str, str], exits: int = 0) -> set[str]:
    """The modules loaded by the end of `observer ARGV`, which must exit with ``exits``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    report = json.loads(done.stderr.rsplit("MODULES ", 1)[1])
    assert (report["code"] or 0) == exits, done.stderr
    return set(report["modules"])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    db = tmp_path / "observer.db"
    write_store(db)
    return {
        **os.environ,
        "OBSERVER_DB": str(db),
        "OBSERVER_SPOOL": str(tmp_path / "spool"),
        "OBSERVER_METRICS_DIR": str(tmp_path / "metrics"),
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["status"],
        ["history", "backup"],
        ["stats"],
        ["stats", "backup"],
        ["runs", "-n", "20"],
        ["show", "1"],
        ["last-failure", "backup"],
        ["run", "--name", "x", "--", "true"],
    ],
    ids=" ".join,
)
def test_no_heavy_import(argv: list[str], env: dict[str, str]) -> None:
    loaded = modules_of(argv, env)
    assert "observer" in loaded
    assert sorted(loaded.intersection(FORBIDDEN)) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "backup"], ["history", "backup", "-n", "5", "--json"], ["status"],
        ["stats"], ["stats", "backup", "--since", "7d"], ["runs", "-n", "20"],
        ["runs", "--failed", "--unit", "b*", "--since", "1h"], ["show", "1"],
        ["last-failure", "backup"],
    ],
    ids=" ".join,
)  # fmt: skip
def test_a_reading_command_starts_without_argparse(argv: list[str], env: dict[str, str]) -> None:
    loaded = modules_of(argv, env)
    assert sorted(loaded.intersection(NOT_FOR_READING)) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--name", "x", "--", "true"], ["run", "--name", "x", "true", "-a"],
        ["run", "--lock", "--name=x", "--every", "5m", "--timeout", "1m", "--", "true"],
        ["run", "--name", "x", "--schedule", "*/5 * * * *", "--kill-after", "3s", "true"],
    ],
    ids=" ".join,
)  # fmt: skip
def test_observer_run_starts_without_argparse(argv: list[str], env: dict[str, str]) -> None:
    # An ordinary `observer run` command line is parsed by observer/run/cli.py's own parser.
    loaded = modules_of(argv, env)
    assert "observer.run.wrapper" in loaded
    assert sorted(loaded.intersection({"argparse", "gettext", "shutil"})) == []


@pytest.mark.parametrize("argv", [["--help"], ["nosuchcommand"]], ids=" ".join)
def test_the_list_of_commands_loads_only_their_registration(
    argv: list[str], env: dict[str, str]
) -> None:
    # `observer --help` (and a mistake, which lists the commands too) registers every command
    # and runs none: each command's module imports what it runs with when it runs.
    loaded = modules_of(argv, env, exits=0 if argv == ["--help"] else 2)
    registering = {"observer.reading.cli", *_LAZY_COMMANDS.values()}
    light = {
        "observer", "observer.model", "observer.records", "observer.users",
        "observer.config_file", "observer.store.set_aside",
    }  # fmt: skip
    packages = {m.rsplit(".", 1)[0] for m in registering | light}
    allowed = registering | light | packages
    assert sorted(m for m in loaded if m.startswith("observer") and m not in allowed) == []
    unused = (
        *FORBIDDEN, "sqlite3", "datetime", "dataclasses", "subprocess", "typing", "tomllib",
        "concurrent.futures", "threading", "json",
    )  # fmt: skip
    assert sorted(loaded.intersection(unused)) == []


def test_version_builds_no_command(env: dict[str, str]) -> None:
    loaded = modules_of(["--version"], env)
    assert sorted(m for m in loaded if m.startswith("observer.")) == []
    # It prints without a parser: argparse and typing stay out.
    assert sorted(loaded.intersection({"argparse", "gettext", "typing"})) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "backup"], ["runs", "-n", "20"], ["status"], ["stats"], ["stats", "backup"],
        ["runs", "--since", "24h"], ["stats", "backup", "--since", "1.5d"],
    ],
    ids=" ".join,
)  # fmt: skip
def test_a_listing_loads_no_definitions_nor_events(argv: list[str], env: dict[str, str]) -> None:
    loaded = modules_of(argv, env)
    assert sorted(loaded.intersection(NOT_FOR_LISTINGS)) == []


def test_show_loads_no_diffs_nor_events(env: dict[str, str]) -> None:
    # show prints what changed in a run's definition, not the diffs of its files; it reads
    # the stored definitions, and hashes, quotes or diffs none (hashlib loads OpenSSL).
    loaded = modules_of(["show", "1"], env)
    assert "observer.store.definitions" in loaded
    unused = (
        "observer.reading.changes", "observer.recording.events", "socket", "decimal",
        "hashlib", "shlex", "difflib",
    )  # fmt: skip
    assert sorted(loaded.intersection(unused)) == []


def test_a_reading_command_loads_only_what_it_uses(env: dict[str, str]) -> None:
    loaded = modules_of(["history", "backup"], env)
    # Following runs, their stats, status's notes and every other command stay out of
    # `history UNIT`.
    unused = (
        "observer.reading.follow", "observer.reading.stats", "observer.reading.set_aside",
        "observer.reading.store_health", "observer.run", "observer.dashboard", "observer.alerts",
        "observer.daemon", "observer.reading.timeline_cli",
    )  # fmt: skip
    assert sorted(loaded.intersection(unused)) == []
    assert "logging" not in loaded  # nothing it runs logs: the entry point spares the import


# Loads a config file as `observer run` does, then reports sys.modules on stderr. Python's
# TOML reader imports typing itself: it is imported first and its typing forgotten, so that
# only an import by observer's config modules loads typing again.
CONFIG_PROBE = """
import sys, tomllib
for name in ("typing", "dataclasses", "inspect"):
    sys.modules.pop(name, None)
from observer.config import load_config
imported = sorted(sys.modules)
from pathlib import Path
config = load_config(Path(sys.argv[1]))
assert config.alerts.rules_for("backup.service").stale_after == 90000.0, config
import observer.web_config
loaded = sorted(sys.modules)
import json
print("MODULES " + json.dumps({"imported": imported, "loaded": loaded}), file=sys.stderr)
"""

CONFIG = """\
host = "web1"

[observe]
include = ["*.service"]
exclude = ["systemd-*.service"]

[output]
max_bytes = 65536

[run]
spool_dir = "/var/spool/observer"

[metrics]
listen = "127.0.0.1:9089"

[alerts]
urls = ["json://127.0.0.1:9/x"]
failures = 3

[alerts.units."backup.service"]
stale_after = "25h"
"""


def test_reading_the_config_imports_no_dataclasses_inspect_nor_typing(tmp_path: Path) -> None:
    # Its records are observer.records' NamedTuples: `observer run` with a config file pays
    # for no dataclass (dataclasses imports inspect) nor for typing.
    path = tmp_path / "observer.toml"
    path.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-c", CONFIG_PROBE, str(path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr.rsplit("MODULES ", 1)[1])
    unwanted = {"dataclasses", "inspect", "typing"}
    assert "observer.config" in report["imported"]
    assert sorted(unwanted.intersection(report["imported"])) == []
    assert {"observer.alert_config", "observer.web_config"} <= set(report["loaded"])
    assert sorted(unwanted.intersection(report["loaded"])) == []
