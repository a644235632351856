"""`observer report --output DIR`: write the static HTML dashboard once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from observer.model import ObserverError
from observer.reading.cli import reading_options


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer report`."""
    about = "write the static HTML dashboard (index.html and a page per unit and run) to DIR"
    parser = commands.add_parser(
        "report", parents=[reading_options(parents)], help=about, description=about
    )
    parser.set_defaults(handler=_report)
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="DIR", help=(
        "directory for the pages (created if missing; only observer's own pages are replaced)"
    ))  # fmt: skip


def _report(args: argparse.Namespace) -> int:
    # Only this command needs the templates: the others start faster without Jinja2.
    from observer.dashboard import pages  # noqa: PLC0415
    from observer.reading.commands import reading  # noqa: PLC0415

    if args.user is not None:
        raise ObserverError(
            "observer report writes the pages of every unit of the database (each user's "
            "units marked with their user): --user is not supported here"
        )
    with reading(args) as conn:
        report = pages.generate(conn, args.output)
    print(
        f"wrote {report.written} pages ({report.unchanged} unchanged, {report.removed} removed): "
        f"{args.output / pages.INDEX}"
    )
    return 0
