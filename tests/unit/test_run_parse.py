"""`observer run`'s own parser (observer/run/cli.py) reads a command line as argparse does,
or leaves it to argparse: never a different answer. The command is argparse.REMAINDER's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.run import cli
from tests.unit import test_reading_parse as reading


def by_cli(argv: list[str]) -> dict[str, Any] | None:
    return reading.by_cli(argv, cli.parse)


def agree(argv: list[str]) -> dict[str, Any] | None:
    """What run's parser made of ``argv``, after checking that argparse makes the same."""
    return reading.agree(argv, cli.parse)


# Command lines the own parser reads, as argparse does.
ORDINARY = [
    ["run", "--name", "x", "--", "true"],
    ["run", "--name", "x", "true"],
    ["run", "--name", "x", "--", "cmd", "-a"],
    ["run", "--name", "x", "cmd", "--name", "y"],
    ["run", "--name", "x", "--", "--", "cmd"],
    ["run", "--name", "x"],
    ["run", "--name", "x", "--"],
    ["run", "--name", "x", "cmd", "-a", "--lock"],
    ["run", "--name", "x", "true", "--", "a"],
    ["run", "--name", "x", "--", "-1"],
    ["run", "--name", "x", ""],
    ["run", "--name", "x", "a b", "-h"],
    ["run", "--lock", "--name", "x", "true"],
    ["run", "--name", "x", "--name", "y", "true"],
    ["run", "--name=x", "--db=", "true"],
    ["--debug", "run", "--name", "x", "true"],
    ["--debug", "--debug", "run", "--name", "x", "true"],
    ["run", "--debug", "--name", "x", "--", "true", "--debug"],
    ["run", "--name", "nightly-report", "--db", "/tmp/x.db", "--config", "o.toml", "--",
     "sh", "-c", "echo hi"],
    ["run", "--name", "x", "--timeout", "30m", "--kill-after", "5s", "--lock", "true"],
    ["run", "--name", "x", "--kill-after", "0s", "true"],
    ["run", "--name", "x", "--every", "5m", "--", "true"],
    ["run", "--name", "x", "--every", "5m", "--every", "1h", "true"],
    ["run", "--name", "x", "--schedule", "*/5 * * * *", "true"],
    ["run", "--name", "x", "--schedule=0 3 * * 1-5", "true"],
    ["run", "--name", "x", "--spool-dir", "s", "--metrics-dir", "m", "--", "true"],
    ["run", "--name", "x", "--db", "a", "--db", "b", "true"],
]  # fmt: skip

# Command lines left to argparse: help, mistakes, and what argparse reads in ways of its own.
LEFT_TO_ARGPARSE = [
    [],
    ["run"],
    ["run", "--", "true"],
    ["run", "true", "--name", "x"],
    ["run", "--help"],
    ["run", "-h", "--name", "x", "true"],
    ["run", "--name", "x", "-h"],
    ["run", "--name", "x", "-a"],
    ["run", "--name", "x", "-", "a"],
    ["run", "--name", "x", "-1"],
    ["run", "--name", "x", "-a b"],
    ["run", "--name", "-x", "true"],
    ["run", "--name", "x y", "true"],
    ["run", "--name", ".x", "true"],
    ["run", "--name", ""],
    ["run", "--name"],
    ["run", "--name", "x", "--db"],
    ["run", "--name", "x", "--db", "--", "true"],
    ["run", "--name", "x", "--db", "-5", "true"],
    ["run", "--nam", "x", "true"],
    ["run", "--name", "x", "--lo", "true"],
    ["run", "--name", "x", "--lock=yes", "true"],
    ["run", "--name", "x", "--timeout", "5", "true"],
    ["run", "--name", "x", "--timeout", "0s", "true"],
    ["run", "--name", "x", "--timeout", "-1s", "true"],
    ["run", "--name", "x", "--kill-after", "soon", "true"],
    ["run", "--name", "x", "--every", "0s", "true"],
    ["run", "--name", "x", "--schedule", "never", "true"],
    ["run", "--name", "x", "--schedule", "* * * * *", "--every", "5m", "true"],
    ["run", "--name", "x", "--every", "5m", "--schedule", "* * * * *", "true"],
    ["run", "--name", "x", "--version", "true"],
    ["--db", "x", "run", "--name", "x", "true"],
    ["history", "backup"],
    ["runs"],
]


@pytest.mark.parametrize("argv", ORDINARY, ids=" ".join)
def test_it_reads_an_ordinary_command_line_as_argparse_does(argv: list[str]) -> None:
    assert agree(argv) is not None


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=repr)
def test_it_leaves_help_mistakes_and_the_unusual_to_argparse(argv: list[str]) -> None:
    assert by_cli(argv) is None


def test_it_converts_values_and_keeps_the_command_as_remainder_gives_it() -> None:
    args = cli.parse(["run", "--name", "x", "--db", "a.db", "--timeout", "1m", "--", "-", "y"])
    assert args is not None
    assert (args.db, args.timeout, args.kill_after) == (Path("a.db"), 60.0, 10.0)
    assert (args.config, args.spool_dir, args.metrics_dir, args.schedule) == (None,) * 4
    assert args.command == ["--", "-", "y"]  # _run drops the "--"
    assert args.handler is cli._run


WORDS = [
    "run", "--name", "--name=x", "x", "job.1", "-x", "", "true", "-a", "-", "--", "5m", "0s",
    "* * * * *", "--db", "--db=a", "--config", "--timeout", "--kill-after", "--lock",
    "--lock=1", "--schedule", "--every", "--every=1h", "--spool-dir", "--metrics-dir",
    "--debug", "-h", "--help", "--lo", "--version",
]  # fmt: skip


@given(st.lists(st.sampled_from(WORDS), max_size=8))
def test_it_never_reads_a_command_line_otherwise_than_argparse(argv: list[str]) -> None:
    agree(argv)


@given(st.lists(st.sampled_from(WORDS[1:]), max_size=8))
def test_it_never_reads_run_otherwise_than_argparse(rest: list[str]) -> None:
    agree(["run", *rest])


@given(st.lists(st.sampled_from(WORDS[3:]), max_size=6))
def test_it_never_reads_a_named_run_otherwise_than_argparse(rest: list[str]) -> None:
    agree(["run", "--name", "x", *rest])
