"""`observer jobs`: list, check, apply, show and run the jobs of the jobs file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from observer.model import ObserverError, is_success

# typing.TYPE_CHECKING would import typing; mypy takes this one as true. Registering the
# command (for `observer --help` too) reads no jobs file and loads no store, no asyncio:
# each handler imports what it uses.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from observer.jobs.jobfile import Job
    from observer.jobs.manager import JobManager
    from observer.jobs.units import JobUnits
    from observer.reading import history

# The jobs file of the system's manager (observer.jobs.jobfile.DEFAULT_JOBS_PATH, which a
# test holds equal), named in the help without importing the jobs file's reader.
_DEFAULT_JOBS_FILE = "/etc/observer/jobs.toml"

_SERVICE = "org.freedesktop.systemd1.Service"


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """Register `observer jobs` and its actions."""
    top = _options(parents, given_only=False)
    # The same options after the action: a default there would undo one given before it
    # (`observer jobs --user apply`), so they set only what is given.
    common = _options(parents, given_only=True)
    about = (
        f"the jobs declared in {_DEFAULT_JOBS_FILE} (--user: ~/.config/observer/jobs.toml), "
        "run by systemd timers"
    )
    parser = commands.add_parser("jobs", parents=[top], help=about, description=about)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=_list)
    actions = parser.add_subparsers(metavar="ACTION")
    sub = actions.add_parser("check", parents=[common], help="check the jobs file and its units")
    sub.add_argument("path", nargs="?", type=Path, metavar="FILE", help="the jobs file to check")
    sub.set_defaults(handler=_check)
    sub = actions.add_parser("apply", parents=[common], help=(
        "write, enable and start the units of the jobs file; remove those of removed jobs"
    ))  # fmt: skip
    sub.set_defaults(handler=_apply)
    sub = actions.add_parser("show", parents=[common], help="a job's units and next runs")
    sub.add_argument("name", metavar="NAME")
    sub.set_defaults(handler=_show)
    sub = actions.add_parser("run", parents=[common], help="start a job now")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--wait", action="store_true", help=(
        "wait for the run, print it as `observer show` does, exit with the job's status"
    ))  # fmt: skip
    sub.set_defaults(handler=_run)
    sub = actions.add_parser("import-crontab", parents=[common], help=(
        "print the jobs file for a crontab (default: the user's, from crontab -l)"
    ))  # fmt: skip
    sub.add_argument("crontab", nargs="?", type=Path, metavar="FILE")
    sub.add_argument("--system", action="store_true", help=(
        "the file has a user column (/etc/crontab, /etc/cron.d/*); default: guessed by path"
    ))  # fmt: skip
    sub.set_defaults(handler=_import_crontab)


def _options(
    parents: Sequence[argparse.ArgumentParser], *, given_only: bool
) -> argparse.ArgumentParser:
    """The options of every action; ``given_only``: set only those given (no defaults)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if given_only else value

    common = argparse.ArgumentParser(add_help=False, parents=list(parents))
    common.add_argument("--file", type=Path, default=default(None), metavar="PATH", help=(
        f"the jobs file; jobs.d/*.toml beside it are read too (default: {_DEFAULT_JOBS_FILE}; "
        "with --user, ~/.config/observer/jobs.toml)"
    ))  # fmt: skip
    common.add_argument("--user", action="store_true", default=default(False), help=(
        "your own jobs, run by your own manager (systemctl --user) from "
        "~/.config/observer/jobs.toml into ~/.config/systemd/user; no root needed"
    ))  # fmt: skip
    common.add_argument("--root", type=Path, default=default(Path("/")), metavar="DIR", help=(
        "operate on the system whose root directory is DIR (default: /)"
    ))  # fmt: skip
    common.add_argument("--bus-address", default=default(None), metavar="ADDRESS", help=(
        "D-Bus address of systemd (default: the system bus; with --user, your user bus)"
    ))  # fmt: skip
    common.add_argument("--config", default=default(None), metavar="PATH", help=(
        "observer's TOML configuration file"
    ))  # fmt: skip
    common.add_argument("--db", type=Path, default=default(None), metavar="PATH", help=(
        "the daemon's database"
    ))  # fmt: skip
    return common


def _manager(args: argparse.Namespace) -> JobManager:
    """The manager ``--user`` names, with the paths the command line gives instead."""
    import dataclasses  # noqa: PLC0415 (see the note at the imports)

    from observer.jobs.manager import SYSTEM, user_manager  # noqa: PLC0415

    manager = user_manager() if args.user else SYSTEM
    return dataclasses.replace(
        manager,
        jobs_file=args.file or manager.jobs_file,
        bus_address=args.bus_address or manager.bus_address,
        db_path=args.db or manager.db_path,
    )


def _jobs(args: argparse.Namespace, path: Path | None = None) -> tuple[Path, list[Job]]:
    from observer.jobs.jobfile import jobs_files, load_jobs  # noqa: PLC0415
    from observer.jobs.manager import check_for_user_manager  # noqa: PLC0415

    source: Path = path or _manager(args).jobs_file
    files = jobs_files(source)
    if not source.exists():
        # Never read as "no jobs": `apply` would remove every job's units.
        raise ObserverError(
            f"no jobs file {str(source)!r}: create it (docs/jobs.md); to remove every job, "
            "leave it empty"
        )
    jobs = load_jobs(files)
    if args.user:
        check_for_user_manager(jobs)
    return source, jobs


def _prepared(
    args: argparse.Namespace, path: Path | None = None
) -> tuple[Path, list[Job], dict[str, JobUnits]]:
    from observer.jobs import apply  # noqa: PLC0415
    from observer.metrics.dropin import metrics_directory, service_settings  # noqa: PLC0415

    source, jobs = _jobs(args, path)
    settings = ""
    # A user's jobs get no $JOB_METRICS_FILE: its directory is made by StateDirectory= under
    # /var/lib, where only the system's manager makes directories.
    if any(job.metrics for job in jobs) and not args.user:
        settings = service_settings(
            metrics_directory(args.config, str(args.db) if args.db else None)
        )
    units = apply.generate(jobs, source, settings, user_manager=args.user)
    apply.check_schedules(jobs)
    apply.check_credentials(jobs, args.root)
    apply.check_sandboxes(jobs, args.root, user_manager=args.user)
    apply.verify(units, jobs, user_manager=args.user)
    return source, jobs, units


def _check(args: argparse.Namespace) -> int:
    from observer.reading import render  # noqa: PLC0415

    source, jobs, _units = _prepared(args, args.path)
    print(f"{source}: ok, {render.count(len(jobs), 'job')}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from observer.jobs import apply  # noqa: PLC0415
    from observer.metrics.dropin import connect  # noqa: PLC0415
    from observer.reading import render  # noqa: PLC0415

    _source, jobs, units = _prepared(args)
    manager = _manager(args)
    plan = apply.plan(jobs, units, args.root, manager.unit_dir)
    if not plan.empty:

        async def change() -> None:
            bus = await connect(manager.bus_address)
            try:
                await apply.execute(plan, jobs, bus)
            finally:
                bus.disconnect()

        asyncio.run(change())
    for word, names in (
        ("added", plan.added),
        ("changed", plan.changed),
        ("removed", plan.removed),
    ):
        for name in names:
            print(f"{word} {name} ({name}.service, {name}.timer)")
    if plan.empty:
        print(f"nothing to change: {render.count(len(jobs), 'job')} as declared")
    return 0


def _list(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415

    from observer.reading import history, render  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    _source, jobs = _jobs(args)
    manager = _manager(args)
    statuses: dict[str, history.UnitStatus] = {}
    path = manager.read_path()
    if Path(path).exists():
        conn = database.open_for_reading(path)
        try:
            keys = {manager.unit_key(j.service): j.service for j in jobs}
            statuses = {keys[s.unit]: s for s, _ in history.unit_summaries(conn, list(keys))}
        except sqlite3.Error:
            statuses = {}
        finally:
            conn.close()
    rows: list[dict[str, object]] = []
    for job in jobs:
        status = statuses.get(job.service)
        rows.append({
            "name": job.name,
            "unit": job.service,
            "timer": job.timer,
            "schedule": list(job.schedules),
            "next_run_at": render.iso_time(status.next_run_usec if status else None),
            "last_started_at": render.iso_time(status.last_started_usec if status else None),
            "last_result": status.last_result if status else None,
        })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = []
    for job in jobs:
        status = statuses.get(job.service)
        last = status.last_result if status is not None else None
        table.append([job.name, ", ".join(job.schedules), _time(status, "next"),
                      _time(status, "last"), last or "-", job.service])  # fmt: skip
    headers = ["NAME", "SCHEDULE", "NEXT RUN", "LAST RUN", "LAST RESULT", "UNIT"]
    print(render.table(headers, table, right=set(), empty="no jobs declared"))
    return 0


def _time(status: history.UnitStatus | None, which: str) -> str:
    from observer.reading import render  # noqa: PLC0415

    if status is None:
        return "-"
    return render.table_time(status.next_run_usec if which == "next" else status.last_started_usec)


def _job(jobs: list[Job], name: str) -> Job:
    for job in jobs:
        if name in (job.name, job.service, job.timer):
            return job
    known = ", ".join(j.name for j in jobs) or "none"
    raise ObserverError(f"no job {name!r} in the jobs file (declared: {known})")


def _show(args: argparse.Namespace) -> int:
    from observer.jobs import apply  # noqa: PLC0415
    from observer.spans import human_duration  # noqa: PLC0415

    _source, jobs, units = _prepared(args)
    job = _job(jobs, args.name)
    print(f"# {job.service}\n{units[job.name].service}\n# {job.timer}\n{units[job.name].timer}")
    times = []
    for settings in job.timers:
        for calendar in settings.calendar:
            times += apply.next_times(f"{calendar} {job.timezone}".strip(), 5)
        if settings.period_seconds is not None:
            print(f"# runs {human_duration(settings.period_seconds)} after each start")
    print("# next runs")
    for shown in sorted(set(times), key=lambda t: t.split(" ", 1)[-1])[:5]:
        print(shown)
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from observer.reading import render  # noqa: PLC0415

    _source, jobs = _jobs(args)
    job = _job(jobs, args.name)
    invocation, code = asyncio.run(_start(_manager(args).bus_address, job.service, args.wait))
    if not args.wait:
        print(f"started {job.service}")
        return 0
    detail = _recorded(args, invocation)
    if detail is not None:
        print(render.detail_text(detail))
    else:
        daemon = "observer daemon --user" if args.user else "observer daemon"
        print(f"{job.service}: finished; the run is not recorded yet (is {daemon} running?)")
    return code


async def _start(bus_address: str | None, unit: str, wait: bool) -> tuple[str, int]:
    from observer.jobs import apply  # noqa: PLC0415
    from observer.metrics.dropin import call, connect, get_property  # noqa: PLC0415

    bus = await connect(bus_address)
    try:
        manager = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
        path = (await call(bus, *manager, "LoadUnit", "s", [unit]))[0]
        job = (await call(bus, *manager, "StartUnit", "ss", [unit, "replace"]))[0]
        if not wait:
            return "", 0
        await apply.job_ended(bus, job, path, every=0.2)  # a oneshot's ends with its run
        invocation = await get_property(bus, path, "Unit", "InvocationID")
        result = await get_property(bus, path, "Service", "Result")
        code = await get_property(bus, path, "Service", "ExecMainCode")
        status = await get_property(bus, path, "Service", "ExecMainStatus")
        assert isinstance(invocation, bytes | bytearray | list)
        hex_id = bytes(invocation).hex()
        if code == 1 and isinstance(status, int) and status:
            return hex_id, status
        if code in (2, 3) and isinstance(status, int):
            return hex_id, 128 + status
        return hex_id, 0 if isinstance(result, str) and is_success(result) else 1
    finally:
        bus.disconnect()


def _recorded(args: argparse.Namespace, invocation: str) -> history.RunDetail | None:
    import sqlite3  # noqa: PLC0415
    import time  # noqa: PLC0415

    from observer.reading import history  # noqa: PLC0415
    from observer.store import database  # noqa: PLC0415

    path = _manager(args).read_path()
    deadline = time.monotonic() + 10
    finished: history.RunDetail | None = None
    while time.monotonic() < deadline:
        if Path(path).exists():
            conn = database.open_for_reading(path)
            try:
                detail = history.run_detail(conn, invocation)
                if detail.run.finished_usec is not None:
                    # Output can reach the journal just after the run's end (a user unit's
                    # nearly always does): give it a moment before printing none.
                    if detail.output_lines:
                        return detail
                    finished = detail
                    deadline = min(deadline, time.monotonic() + 2)
            except (history.NoSuchRunError, sqlite3.Error):
                pass
            finally:
                conn.close()
        time.sleep(0.2)
    return finished


def _import_crontab(args: argparse.Namespace) -> int:
    from observer.jobs import crontab  # noqa: PLC0415

    if args.crontab is None:
        import subprocess  # noqa: PLC0415

        listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
        if listed.returncode != 0:
            raise ObserverError(f"crontab -l failed: {listed.stderr.strip()}")
        text, system, name = listed.stdout, False, "crontab -l"
    else:
        text = args.crontab.read_text(encoding="utf-8")
        system = args.system or str(args.crontab).startswith(("/etc/crontab", "/etc/cron.d"))
        name = str(args.crontab)
    sys.stdout.write(crontab.to_jobs_file(text, system=system, source=name))
    return 0
