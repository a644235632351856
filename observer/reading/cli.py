"""The commands that read recorded runs: their options, parsed before anything heavy is
imported; what each does is in ``commands`` (imported when the command runs).

One table (``_COMMANDS``) says each command's options. An ordinary command line is parsed
from it directly (``parse``), without importing argparse: the import alone costs a reading
command a good part of its start. argparse parses from the same table what ``parse`` leaves
(``--help``, a mistake to explain, abbreviated or combined options), and the completion and
man page read its parser.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from argparse import Namespace
    from datetime import timedelta
else:
    # What argparse would give, without importing it: the same attributes, read the same way.
    from types import SimpleNamespace as Namespace


class Option:
    """One argument of a command: what argparse's add_argument is told, and what the fast
    parser reads (a positional when its one name has no dash). `observer run`'s options
    (observer/run/cli.py) are Options too."""

    __slots__ = ("convert", "default", "flags", "help", "metavar", "optional", "required", "switch")

    def __init__(
        self,
        *flags: str,
        help: str,
        metavar: str | None = None,
        convert: Callable[[str], object] | None = None,
        switch: bool = False,
        optional: bool = False,
        default: object = None,
        required: bool = False,
    ) -> None:
        self.flags = flags
        self.help = help
        self.metavar = metavar
        self.convert = convert  # argparse's type=
        self.switch = switch  # action="store_true"
        self.optional = optional  # a positional that may be left out (nargs="?")
        self.default = False if switch else default
        self.required = required  # an option that must be given (required=True)

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def dest(self) -> str:
        """The attribute argparse gives its value: the first long name, else the first."""
        name = next((flag for flag in self.flags if flag.startswith("--")), self.flags[0])
        return name.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        """Add it to an argparse parser (or one of its groups)."""
        settings: dict[str, object] = {"help": self.help}
        if self.switch:
            settings["action"] = "store_true"
        if self.convert is not None:
            settings["type"] = self.convert
        if self.metavar is not None:
            settings["metavar"] = self.metavar
        if self.optional:
            settings["nargs"] = "?"
        if self.default is not None and not self.switch:
            settings["default"] = self.default
        if self.required:
            settings["required"] = True
        parser.add_argument(*self.flags, **settings)  # type: ignore[arg-type]


def since_span(text: str) -> timedelta:
    """``--since``'s value: a span in the one grammar (observer/spans.py)."""
    from datetime import timedelta  # noqa: PLC0415 (only when --since is given)

    from observer.spans import parse_span  # noqa: PLC0415

    try:
        return timedelta(seconds=parse_span(text))
    except ValueError as e:
        raise type_error(str(e)) from None


def _count(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise type_error(f"invalid count {text!r}: use a whole number above 0")
    return int(text)


def type_error(message: str) -> Exception:
    """A bad value's error as argparse shows it (only argparse meets one: see ``parse``)."""
    import argparse  # noqa: PLC0415

    return argparse.ArgumentTypeError(message)


DEBUG = Option("--debug", switch=True, help="log details and show tracebacks")
# The options of every command that reads the store.
_READING = (
    Option("--db", metavar="PATH", help=(
        "database to read (default: $OBSERVER_DB, or /var/lib/observer/observer.db as root, "
        "or ~/.local/share/observer/observer.db if it exists, else /var/lib/observer/observer.db)"
    )),
    Option("--user", metavar="NAME", help=(
        "only the units of user NAME (systemctl --user); default: the system's and, if you "
        "are not root, your own"
    )),
)  # fmt: skip
_HOST = Option(
    "--host", metavar="NAME|GLOB",
    help="only runs of the hosts matching, e.g. web3 or 'web*' (a central database)",
)  # fmt: skip
# ... and of every listing.
_LISTING = (
    Option("--json", switch=True, help="print JSON for scripts"),
    _HOST,
    Option("-l", "--wide", switch=True, help=(
        "every column, however wide (default: the columns that fit the terminal)"
    )),
)  # fmt: skip
_UNIT = Option("unit", metavar="UNIT", help="e.g. backup or backup.service")
_FOLLOW = Option("-f", "--follow", switch=True, help=(
    "print runs as they finish, until interrupted (one JSON object a line with --json)"
))  # fmt: skip

# Each command: what it prints, and its own arguments (besides the listings' options).
_COMMANDS: dict[str, tuple[str, tuple[Option, ...]]] = {
    "history": ("the newest runs of one unit", (
        _UNIT, Option("-n", "--limit", convert=_count, help="runs (default: 20)"), _FOLLOW,
    )),
    "show": ("everything recorded about one run, with its output", (
        Option("run_id", metavar="RUN_ID", help="a run's ID or its invocation ID"),
    )),
    "diff": ("how the definitions two runs started with differ", (
        Option("before", metavar="RUN_A", help="the earlier run's ID or invocation ID"),
        Option("after", metavar="RUN_B", help="the later run's ID or invocation ID"),
    )),
    "last-failure": ("the newest failed run of a unit", (_UNIT,)),
    "stats": ("success rate and durations, per unit", (
        Option("unit", metavar="UNIT", optional=True, help="one unit (default: all)"),
        Option("--since", convert=since_span, metavar="SPAN", help=(
            "only runs started in the last SPAN, e.g. 7d"
        )),
    )),
    "runs": ("runs of all units, newest first", (
        Option("--since", convert=since_span, metavar="SPAN", help=(
            "only runs started in the last SPAN (default: 24h)"
        )),
        Option("--unit", metavar="GLOB", help="only units matching, e.g. 'backup*'"),
        Option("--failed", switch=True, help="only runs that failed"),
        Option("-n", "--limit", convert=_count, metavar="N", help=(
            "the newest N runs (default: all)"
        )),
        _FOLLOW,
    )),
    "status": ("each unit's last result and next run", ()),
}  # fmt: skip
COMMANDS = frozenset(_COMMANDS)


def reading_options(parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The options of every command that reads the store (``--db``), for ``parents=``."""
    import argparse  # noqa: PLC0415 (an ordinary command line is parsed without it)

    common = argparse.ArgumentParser(add_help=False, parents=list(parents))
    for option in _READING:
        option.add_to(common)
    return common


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
    only: str | None = None,
) -> None:
    """Register the commands that read the store: all of them, or only the one ``only`` names
    when it is one (the command being run: building the others costs its start)."""
    import argparse  # noqa: PLC0415

    listing = argparse.ArgumentParser(add_help=False, parents=[reading_options(parents)])
    for option in _LISTING:
        option.add_to(listing)
    for name, (about, arguments) in _COMMANDS.items():
        if only in _COMMANDS and name != only:
            continue
        parser = commands.add_parser(name, parents=[listing], help=about, description=about)
        parser.set_defaults(handler=_later(name))
        for option in arguments:
            option.add_to(parser)


def host_option(parser: argparse.ArgumentParser) -> None:
    _HOST.add_to(parser)


def parse(argv: Sequence[str]) -> Namespace | None:
    """``observer [--debug] COMMAND ...`` for a reading command, parsed as argparse would;
    None for any other command line, and for one this does not read exactly as argparse
    (``--help``, a mistake, an abbreviated or combined option, ``--``): argparse parses
    those (from the same table), and explains the mistakes."""
    start = command_at(argv)
    if start == len(argv) or argv[start] not in _COMMANDS:
        return None
    name = argv[start]
    options = (DEBUG, *_READING, *_LISTING, *_COMMANDS[name][1])
    values = {option.dest: option.default for option in options}
    values["debug"] = start > 0
    given = _read_options(argv[start + 1 :], options, values)
    positionals = [option for option in options if option.positional]
    required = sum(not option.optional for option in positionals)
    if given is None or not required <= len(given) <= len(positionals):
        return None
    values.update((option.dest, value) for option, value in zip(positionals, given, strict=False))
    return Namespace(**values, handler=_later(name))


def command_at(argv: Sequence[str]) -> int:
    """Where the command's name is in ``observer [--debug] COMMAND ...`` (the end: none)."""
    return next((i for i, arg in enumerate(argv) if arg != "--debug"), len(argv))


def _read_options(
    argv: Sequence[str], options: Sequence[Option], values: dict[str, object]
) -> list[str] | None:
    """Put the options' values in ``values``; the positionals given, in order (None when
    an argument is not what ``parse`` reads exactly)."""
    named = flags_of(options)
    given: list[str] = []
    rest = iter(argv)
    for arg in rest:
        if not arg.startswith("-"):
            given.append(arg)
        elif read_option(arg, rest, named, values) is None:
            return None
    return given


def flags_of(options: Sequence[Option]) -> dict[str, Option]:
    """The options (not the positionals) by each of their flags."""
    return {flag: option for option in options if not option.positional for flag in option.flags}


def read_option(
    arg: str, rest: Iterator[str], named: Mapping[str, Option], values: dict[str, object]
) -> Option | None:
    """Put the value of option ``arg`` (given with ``=``, or the next of ``rest``) in
    ``values``; the option read, or None when it is not what a fast parser reads exactly
    (argparse then parses it, and explains a mistake)."""
    flag, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
    option = named.get(flag)
    if option is None or (option.switch and equals):
        return None
    if option.switch:
        values[option.dest] = True
        return option
    if not equals:
        # argparse takes no value that starts with a dash (a missing one reads as such)
        value = next(rest, "-")
        if value.startswith("-"):
            return None
    try:
        values[option.dest] = value if option.convert is None else option.convert(value)
    except Exception:  # argparse explains the bad value
        return None
    return option


def _later(name: str) -> Callable[[Namespace], int]:
    """The handler of command ``name`` in observer/reading/commands.py, imported when the
    command runs."""
    function = f"{name.replace('-', '_')}_command"

    def handler(args: Namespace) -> int:
        run: Callable[[Namespace], int] = getattr(
            importlib.import_module("observer.reading.commands"), function
        )
        return run(args)

    handler.__name__ = function
    return handler
