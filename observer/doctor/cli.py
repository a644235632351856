"""`observer doctor`: what on this server makes observer blind or noisy, and how to fix it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. Registering the
# command (for `observer --help` too) loads none of the checks: they are imported to run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from observer.doctor.checks import Finding

ABOUT = "check this server for what makes observer miss runs or alert nobody"
WIDTH = 80


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer doctor`."""
    parser = commands.add_parser("doctor", parents=list(parents), help=ABOUT, description=(
        f"{ABOUT[0].upper()}{ABOUT[1:]}: each finding with the line that fixes it. Exit "
        "status 0: nothing to fix; 1: something to fix; 2: a check could not run."
    ))  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--user", action="store_true", help=(
        "check your own daemon (observer daemon --user): its database, configuration and "
        "your manager"
    ))  # fmt: skip
    parser.add_argument("--host", metavar="NAME|GLOB", help=(
        "on a central database, check the runs of these hosts (their own setup is checked "
        "on each server)"
    ))  # fmt: skip
    parser.add_argument("--db", type=Path, metavar="PATH", help="the daemon's database")
    parser.add_argument("--config", type=Path, metavar="PATH", help=(
        "observer's TOML configuration file"
    ))  # fmt: skip
    parser.add_argument("--root", type=Path, default=Path("/"), metavar="DIR", help=(
        "read journald.conf, the journal, /etc/passwd and lingering under DIR (default: /)"
    ))  # fmt: skip
    parser.add_argument("--bus-address", metavar="ADDRESS", help=(
        "D-Bus address of systemd (default: the system bus; with --user, your user bus)"
    ))  # fmt: skip
    parser.add_argument("--journal-dir", type=Path, metavar="DIR", help=(
        "read the journal from DIR (default: var/log/journal and run/log/journal under --root)"
    ))  # fmt: skip
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415 (see the note at the imports)
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import time  # noqa: PLC0415

    from observer import users  # noqa: PLC0415
    from observer.doctor import checks, facts  # noqa: PLC0415

    where = facts.Where(
        root=args.root,
        db=args.db,
        config=args.config,
        bus_address=args.bus_address,
        journal_dir=args.journal_dir,
        user=users.current_user() if args.user else None,
        host=args.host,
    )
    now_usec = int(time.time() * 1_000_000)
    gathered = facts.gather(where, now_usec, socket.gethostname())
    findings = checks.examine(gathered, now_usec)
    if args.json:
        json.dump([dataclasses.asdict(f) for f in findings], sys.stdout, indent=2)
        print()
    else:
        width = shutil.get_terminal_size((WIDTH, 24)).columns if sys.stdout.isatty() else WIDTH
        print(report(findings, min(width, WIDTH)))
    return checks.exit_status(findings)


def report(findings: list[Finding], width: int = WIDTH) -> str:
    """The findings for people, most serious first, wrapped to ``width`` columns."""
    from observer.doctor.checks import Severity  # noqa: PLC0415

    order = [Severity.ERROR, Severity.WARNING, Severity.UNCHECKED, Severity.INFO]
    ranked = sorted(_merged(findings), key=lambda f: order.index(f.severity))
    blocks = [_block(f, width) for f in ranked]
    return "\n\n".join([*blocks, summary(findings)])


def _merged(findings: list[Finding]) -> list[Finding]:
    """Checks that could not run for the same reason, as one finding naming them all."""
    import dataclasses  # noqa: PLC0415

    from observer.doctor.checks import Severity  # noqa: PLC0415

    merged: list[Finding] = []
    unchecked: dict[str, int] = {}  # the reason -> its finding's place in merged
    for finding in findings:
        if finding.severity is not Severity.UNCHECKED:
            merged.append(finding)
        elif (at := unchecked.get(finding.what)) is not None:
            merged[at] = dataclasses.replace(
                merged[at], check=f"{merged[at].check}, {finding.check}"
            )
        else:
            unchecked[finding.what] = len(merged)
            merged.append(finding)
    return merged


def _block(finding: Finding, width: int) -> str:
    import textwrap  # noqa: PLC0415

    head = f"{finding.severity.upper()} {finding.check}: "
    lines = textwrap.wrap(
        head + finding.what, width, subsequent_indent="    ", break_on_hyphens=False
    )
    if finding.fix:
        lines += textwrap.wrap(
            finding.fix, width, initial_indent="  fix: ", subsequent_indent="       ",
            break_long_words=False, break_on_hyphens=False,
        )  # fmt: skip
    return "\n".join(lines)


def summary(findings: list[Finding]) -> str:
    """One line: how many things need fixing, and what could not be checked."""
    from observer.doctor.checks import Severity  # noqa: PLC0415

    errors = sum(f.severity is Severity.ERROR for f in findings)
    warnings = sum(f.severity is Severity.WARNING for f in findings)
    unchecked = sum(f.severity is Severity.UNCHECKED for f in findings)
    parts = []
    if errors or warnings:
        parts.append(f"{errors + warnings} to fix ({errors} error(s), {warnings} warning(s))")
    else:
        parts.append("nothing to fix")
    if unchecked:
        parts.append(f"{unchecked} check(s) could not run")
    return "observer doctor: " + "; ".join(parts)
