"""`observer run`'s command line: its options, checked, become the wrapper's Options."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from observer.run.schedule import Schedule, ScheduleError, parse_cron
from observer.run.wrapper import Options, exit_without_teardown, run_job
from observer.store.database import default_db_path

# Names become file names (NAME.prom, NAME.lock) and are typed in `observer history NAME`.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:+-]{0,199}")


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer run`."""
    about = "run a command (a cron job) and record it like a systemd unit's run"
    parser = commands.add_parser(
        "run", parents=list(parents), help=about, description=about[0].upper() + about[1:] + ".",
        usage="%(prog)s --name NAME [options] [--] CMD [ARGS...]",
    )  # fmt: skip
    parser.add_argument("--name", required=True, type=_job_name, help="the job's name")
    parser.add_argument("--db", type=Path, metavar="PATH", help="database to write")
    parser.add_argument("--config", type=Path, metavar="PATH", help="TOML configuration file")
    parser.add_argument(
        "--timeout", type=_positive_span, metavar="SPAN",
        help="stop the job after SPAN (e.g. 30m): SIGTERM, then SIGKILL; recorded as timeout",
    )  # fmt: skip
    parser.add_argument(
        "--kill-after", type=_span, default=10.0, metavar="SPAN",
        help="after a timeout's SIGTERM, SIGKILL when the job is still there (default: 10s)",
    )  # fmt: skip
    parser.add_argument(
        "--lock", action="store_true",
        help="do not start while a run of NAME is still going on; record it as skipped",
    )  # fmt: skip
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--schedule", type=_cron, metavar="EXPR",
        help="the job's cron schedule, e.g. '*/5 * * * *' (so a missed run can be noticed)",
    )  # fmt: skip
    when.add_argument("--every", type=_period, metavar="SPAN", help="or: it runs every SPAN")
    parser.add_argument(
        "--spool-dir", type=Path, metavar="DIR",
        help="keep runs the database cannot take here (default: $OBSERVER_SPOOL, "
        "else spool/ beside the database)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-dir", type=Path, metavar="DIR",
        help="where JOB_METRICS_FILE ends up as NAME.prom (default: $OBSERVER_METRICS_DIR, "
        "job-metrics/ beside the database)",
    )  # fmt: skip
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_run)


def _job_name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid job name {text!r}: use up to 200 letters, digits and _ . @ : + - "
            "(not starting with . or -), e.g. nightly-report"
        )
    return text


def _span(text: str) -> float:
    from observer.spans import parse_span  # noqa: PLC0415 (only --timeout and --every need it)

    try:
        return parse_span(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_span(text: str) -> float:
    seconds = _span(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: it must be above 0")
    return seconds


def _period(text: str) -> Schedule:
    from datetime import timedelta  # noqa: PLC0415

    return Schedule(every=timedelta(seconds=_positive_span(text)))


def _cron(text: str) -> Schedule:
    try:
        return parse_cron(text)
    except ScheduleError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("observer run: give the command to run, e.g. observer run --name NAME -- CMD",
              file=sys.stderr)  # fmt: skip
        return 2
    status = run_job(
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
    exit_without_teardown(status)
    return status
