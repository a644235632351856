"""The reading commands' own parser (observer/reading/cli.py) reads a command line as argparse
does, or leaves it to argparse: never a different answer."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observer.__main__ import build_parser
from observer.reading import cli


def by_argparse(argv: list[str]) -> dict[str, Any] | None:
    """What argparse makes of ``argv`` (None: it refused it), the handler by name."""
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            args = build_parser(argv).parse_args(argv)
    except SystemExit:
        return None
    return named_handler(vars(args))


# An own parser: observer.reading.cli's, or observer.run.cli's (test_run_parse.py).
Parse = Callable[[list[str]], object | None]


def by_cli(argv: list[str], parse: Parse = cli.parse) -> dict[str, Any] | None:
    args = parse(argv)
    return None if args is None else named_handler(vars(args))


def named_handler(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "handler": values["handler"].__name__}


def agree(argv: list[str], parse: Parse = cli.parse) -> dict[str, Any] | None:
    """What the own parser made of ``argv``, after checking that argparse makes the same."""
    fast = by_cli(argv, parse)
    if fast is not None:
        assert fast == by_argparse(argv), argv
    return fast


# Command lines the own parser reads, as argparse does.
ORDINARY = [
    ["history", "backup"],
    ["history", "backup", "-n", "5"],
    ["history", "-n", "5", "backup", "--json"],
    ["history", "--limit=3", "backup.service", "-f", "--host", "web*"],
    ["--debug", "history", "backup"],
    ["history", "backup", "--debug", "-l"],
    ["history", "My Files", "--db", "/tmp/x.db", "--user", "alice"],
    ["history", "", "--db="],
    ["show", "12"],
    ["show", "--json", "0b9c"],
    ["diff", "1", "2"],
    ["last-failure", "backup", "--wide"],
    ["stats"],
    ["stats", "backup"],
    ["stats", "--since", "7d", "backup"],
    ["stats", "backup", "--since=24h", "--json"],
    ["runs"],
    ["runs", "-n", "20"],
    ["runs", "--failed", "--unit", "job-05*", "--since", "10000d"],
    ["runs", "--json", "--since", "1h", "--follow"],
    ["runs", "--since", "1h", "--since", "2h"],
    ["status"],
    ["status", "--host", "web3", "--json", "--db", "x.db"],
]

# Command lines left to argparse: help, mistakes, and what argparse reads in ways of its own.
LEFT_TO_ARGPARSE = [
    [],
    ["--debug"],
    ["history"],
    ["history", "--help"],
    ["status", "-h"],
    ["history", "a", "b"],
    ["history", "backup", "-n", "0"],
    ["history", "backup", "-n"],
    ["history", "backup", "-n5"],
    ["history", "backup", "--lim", "5"],
    ["history", "backup", "-lf"],
    ["history", "--", "backup"],
    ["history", "-backup"],
    ["history", "backup", "--json=yes"],
    ["history", "backup", "--user", "-x"],
    ["stats", "--since", "soon"],
    ["runs", "backup"],
    ["runs", "--version"],
    ["diff", "1"],
    ["--db", "x", "status"],
    ["daemon"],
    ["run", "--name", "x", "--", "true"],
    ["timeline"],
]


@pytest.mark.parametrize("argv", ORDINARY, ids=" ".join)
def test_it_reads_an_ordinary_command_line_as_argparse_does(argv: list[str]) -> None:
    assert agree(argv) is not None


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=repr)
def test_it_leaves_help_mistakes_and_the_unusual_to_argparse(argv: list[str]) -> None:
    assert by_cli(argv) is None


def test_it_converts_values_as_argparse_types_them() -> None:
    args = cli.parse(["stats", "--since", "2h", "--db", "a.db"])
    assert args is not None
    assert args.since.total_seconds() == 7200
    assert args.db == "a.db"  # the store opens it as it is (no pathlib for that)


WORDS = [
    "history", "show", "diff", "last-failure", "stats", "runs", "status", "timeline", "backup",
    "7", "0", "1h", "x y", "", "-", "--", "-n", "--limit", "--limit=2", "-f", "--follow",
    "--json", "--json=1", "-l", "--wide", "--db", "--db=a", "--user", "--host", "--since",
    "--since=3d", "--unit", "--failed", "--debug", "-h", "--lim", "-lf", "-n3",
]  # fmt: skip


@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_it_never_reads_a_command_line_otherwise_than_argparse(argv: list[str]) -> None:
    agree(argv)


@given(st.sampled_from(sorted(cli.COMMANDS)), st.lists(st.sampled_from(WORDS[8:]), max_size=6))
def test_it_never_reads_a_command_otherwise_than_argparse(name: str, rest: list[str]) -> None:
    agree([name, *rest])
