"""The command line as plain data, read from the argument parser: what completion and the man
page are generated from, so that a new command or option appears in both by itself."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import StrEnum


class Value(StrEnum):
    """What an option's value or a positional argument is, for completing it."""

    NONE = "none"  # an option that takes no value
    ANY = "any"  # a value nothing can be offered for (a span, a name, an address)
    FILE = "file"
    DIRECTORY = "directory"
    UNIT = "unit"  # a unit name: the recorded ones are offered
    CHOICE = "choice"
    COMMAND = "command"  # a command line to run (`observer run -- CMD`)


@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]
    value: Value
    metavar: str | None
    help: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Positional:
    name: str
    value: Value
    help: str
    optional: bool
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """One command (the program itself has the empty path)."""

    path: tuple[str, ...]
    help: str
    description: str
    usage: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]
    subcommands: tuple[Command, ...]

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def walk(self) -> list[Command]:
        """This command and every command below it, parents first."""
        return [self, *(c for sub in self.subcommands for c in sub.walk())]


# What a value is, from the metavar its option shows (completion offers files, units, ...).
_METAVAR_VALUES = {
    "PATH": Value.FILE,
    "FILE": Value.FILE,
    "DIR": Value.DIRECTORY,
    "DIRECTORY": Value.DIRECTORY,
    "UNIT": Value.UNIT,
    "GLOB": Value.UNIT,
}


def _value(action: argparse.Action) -> Value:
    if action.nargs == 0:
        return Value.NONE
    if action.choices is not None:
        return Value.CHOICE
    if action.nargs == argparse.REMAINDER:
        return Value.COMMAND
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return _METAVAR_VALUES.get(metavar, Value.ANY)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    # argparse's own expansion of %(default)s and the like.
    text: str = parser._get_formatter()._expand_help(action)
    return " ".join(text.split())


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().strip()
    return " ".join(usage.removeprefix("usage:").split())


def read(parser: argparse.ArgumentParser) -> Command:
    """The command tree of ``parser``."""
    return _read(parser, (), "")


def _read(parser: argparse.ArgumentParser, path: tuple[str, ...], about: str) -> Command:
    options: list[Option] = []
    positionals: list[Positional] = []
    subcommands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                # An alias maps to a parser already read; a hidden command has its help suppressed.
                if id(sub) in seen or helps.get(name) == argparse.SUPPRESS:
                    continue
                seen.add(id(sub))
                subcommands.append(_read(sub, (*path, name), helps.get(name, "")))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            options.append(
                Option(
                    flags=tuple(action.option_strings),
                    value=_value(action),
                    metavar=None if action.nargs == 0 else metavar,
                    help=_help(parser, action),
                    choices=tuple(str(c) for c in action.choices or ()),
                )
            )
        else:
            name = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            positionals.append(
                Positional(
                    name=name,
                    value=_value(action),
                    help=_help(parser, action),
                    optional=action.nargs in ("?", "*", argparse.REMAINDER),
                    choices=tuple(str(c) for c in action.choices or ()),
                )
            )
    return Command(
        path=path,
        help=" ".join(about.split()),
        description=" ".join((parser.description or about).split()),
        usage=_usage(parser),
        options=tuple(options),
        positionals=tuple(positionals),
        subcommands=tuple(subcommands),
    )
