"""`observer run`'s command line: its options, checked, become the wrapper's Options.

One table (``_OPTIONS``) says them. An ordinary command line is parsed from it directly
(``parse``), without importing argparse: the import costs every cron job a few milliseconds.
argparse parses from the same table what ``parse`` leaves (``--help``, a mistake to explain,
abbreviated options), and the completion and man page read its parser.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from observer.reading.cli import DEBUG, Option, command_at, flags_of, read_option, type_error

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. The wrapper and the
# schedules are imported where a command line uses them: registering the command (for
# `observer --help` too) needs neither.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from argparse import Namespace

    from observer.run.schedule import Schedule
else:
    # What argparse would give, without importing it: the same attributes, read the same way.
    from types import SimpleNamespace as Namespace

# Names become file names (NAME.prom, NAME.lock) and are typed in `observer history NAME`.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]{0,199}")


def _job_name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise type_error(
            f"invalid job name {text!r}: use up to 200 letters, digits and _ . @ : + - "
            "(not starting with . or -), e.g. nightly-report"
        )
    return text


def _span(text: str) -> float:
    from observer.spans import parse_span  # noqa: PLC0415 (only --timeout and --every need it)

    try:
        return parse_span(text)
    except ValueError as e:
        raise type_error(str(e)) from None


def _positive_span(text: str) -> float:
    seconds = _span(text)
    if seconds <= 0:
        raise type_error(f"invalid duration {text!r}: it must be above 0")
    return seconds


def _period(text: str) -> Schedule:
    from datetime import timedelta  # noqa: PLC0415

    from observer.run.schedule import Schedule  # noqa: PLC0415

    return Schedule(every=timedelta(seconds=_positive_span(text)))


def _cron(text: str) -> Schedule:
    from observer.run.schedule import ScheduleError, parse_cron  # noqa: PLC0415

    try:
        return parse_cron(text)
    except ScheduleError as e:
        raise type_error(str(e)) from None


# When the job is due: one or the other (an argparse mutually exclusive group).
_WHEN = (
    Option(
        "--schedule", convert=_cron, metavar="EXPR",
        help="the job's cron schedule, e.g. '*/5 * * * *' (so a missed run can be noticed)",
    ),
    Option("--every", convert=_period, metavar="SPAN", help="or: it runs every SPAN"),
)  # fmt: skip
# The options, in the order --help lists them; _WHEN stands for its group.
_OPTIONS: tuple[Option | tuple[Option, ...], ...] = (
    Option("--name", required=True, convert=_job_name, help="the job's name"),
    Option("--db", convert=Path, metavar="PATH", help="database to write"),
    Option("--config", convert=Path, metavar="PATH", help="TOML configuration file"),
    Option(
        "--timeout", convert=_positive_span, metavar="SPAN",
        help="stop the job after SPAN (e.g. 30m): SIGTERM, then SIGKILL; recorded as timeout",
    ),
    Option(
        "--kill-after", convert=_span, default=10.0, metavar="SPAN",
        help="after a timeout's SIGTERM, SIGKILL when the job is still there (default: 10s)",
    ),
    Option(
        "--lock", switch=True,
        help="do not start while a run of NAME is still going on; record it as skipped",
    ),
    _WHEN,
    Option(
        "--spool-dir", convert=Path, metavar="DIR",
        help="keep runs the database cannot take here (default: $OBSERVER_SPOOL, "
        "else spool/ beside the database)",
    ),
    Option(
        "--metrics-dir", convert=Path, metavar="DIR",
        help="where JOB_METRICS_FILE ends up as NAME.prom (default: $OBSERVER_METRICS_DIR, "
        "job-metrics/ beside the database)",
    ),
)  # fmt: skip


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer run`."""
    import argparse  # noqa: PLC0415 (an ordinary command line is parsed without it)

    about = "run a command (a cron job) and record it like a systemd unit's run"
    parser = commands.add_parser(
        "run", parents=list(parents), help=about, description=about[0].upper() + about[1:] + ".",
        usage="%(prog)s --name NAME [options] [--] CMD [ARGS...]",
    )  # fmt: skip
    for entry in _OPTIONS:
        if isinstance(entry, Option):
            entry.add_to(parser)
            continue
        group = parser.add_mutually_exclusive_group()
        for option in entry:
            option.add_to(group)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run)


def parse(argv: Sequence[str]) -> Namespace | None:
    """``observer [--debug] run --name NAME [options] [--] CMD ARGS...``, parsed as argparse
    would: the command is what argparse.REMAINDER gives (from the first argument that is not
    an option, or from a ``--``, which it keeps). None for any other command line and for one
    this does not read exactly as argparse (``--help``, a mistake, an abbreviated option, a
    value starting with a dash): argparse parses those, and explains the mistakes."""
    start = command_at(argv)
    if start == len(argv) or argv[start] != "run":
        return None
    options = [DEBUG]
    for entry in _OPTIONS:
        options.extend((entry,) if isinstance(entry, Option) else entry)
    values = {option.dest: option.default for option in options}
    values["debug"] = start > 0
    given: set[str] = set()
    command = _read_options(argv[start + 1 :], options, values, given)
    required = {option.dest for option in options if option.required}
    if command is None or not required <= given or sum(o.dest in given for o in _WHEN) > 1:
        return None
    return Namespace(**values, command=command, handler=_run)


def _read_options(
    argv: Sequence[str], options: Sequence[Option], values: dict[str, object], given: set[str]
) -> list[str] | None:
    """Put the options' values in ``values`` and the names of those with a value in
    ``given``; the command, from the first argument that is not an option or from a ``--``
    (None when an argument is not what ``parse`` reads exactly)."""
    named = flags_of(options)
    rest = iter(argv)
    for arg in rest:
        if arg == "--" or not arg.startswith("-"):
            return [arg, *rest]
        option = read_option(arg, rest, named, values)
        if option is None:
            return None
        if not option.switch:
            given.add(option.dest)
    return []


def _run(args: Namespace) -> int:
    from observer.run.wrapper import Options, run_job  # noqa: PLC0415
    from observer.store.database import default_db_path  # noqa: PLC0415

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("observer run: give the command to run, e.g. observer run --name NAME -- CMD",
              file=sys.stderr)  # fmt: skip
        return 2
    return run_job(
        Options(
            name=args.name,
            command=command,
            db_path=args.db or default_db_path(),
            config_path=args.config,
            spool_dir=args.spool_dir,
            metrics_dir=args.metrics_dir,
            timeout=args.timeout,
            kill_after=args.kill_after,
            lock=args.lock,
            schedule=args.schedule or args.every,
        )
    )
