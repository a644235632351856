"""Make the machine match the jobs file: plan every change, check it, then make it.

The plan (pure but for reading the unit directory) names each unit file to write or
remove; `check` runs systemd's own parsers on it (``systemd-analyze calendar`` for each
schedule, ``systemd-analyze verify`` on the generated units) and checks the credential
files; only then are files written, and if any later step fails the old files are put
back, so that an error changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from observer.jobs.jobfile import Job
from observer.jobs.sandbox import breakages
from observer.jobs.units import JobUnits, owner, render
from observer.model import ObserverError

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

UNIT_DIR = PurePosixPath("/etc/systemd/system")
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"


@dataclass(frozen=True, slots=True)
class Plan:
    """What `apply` will change; paths are on the host (under ``--root``)."""

    writes: dict[Path, str] = field(default_factory=dict)
    removes: tuple[Path, ...] = ()
    added: tuple[str, ...] = ()  # job names
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.writes or self.removes)


def under(root: Path, path: PurePosixPath) -> Path:
    return root / str(path).lstrip("/")


def generate(
    jobs: list[Job], source: Path, metrics_settings: str, *, user_manager: bool = False
) -> dict[str, JobUnits]:
    """Every job's units, by job name."""
    shown = str(source).translate({c: "?" for c in range(32)})
    return {
        job.name: render(
            job, shown, metrics_settings if job.metrics else "", user_manager=user_manager
        )
        for job in jobs
    }


def owned_units(directory: Path) -> dict[str, str]:
    """The unit files in ``directory`` that `apply` wrote: file name -> job name."""
    found = {}
    for path in sorted([*directory.glob("*.service"), *directory.glob("*.timer")]):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with path.open(encoding="utf-8") as f:
                job = owner(f.readline())
            if job is not None and not path.is_symlink():
                found[path.name] = job
    return found


def plan(
    jobs: list[Job], units: dict[str, JobUnits], root: Path, unit_dir: PurePosixPath = UNIT_DIR
) -> Plan:
    """The files to write and remove; refuses to overwrite a unit observer did not write."""
    directory = under(root, unit_dir)
    owned = owned_units(directory) if directory.is_dir() else {}
    writes: dict[Path, str] = {}
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    for job in jobs:
        texts = units[job.name]
        differs = False
        new = True
        for name, text in ((job.service, texts.service), (job.timer, texts.timer)):
            path = directory / name
            if path.exists() or path.is_symlink():
                if owned.get(name) != job.name:
                    raise ObserverError(
                        f"{job.source}:{job.line or 1}: job {job.name!r}: "
                        f"{unit_dir / name} exists and was not written by observer: rename "
                        "the job, or remove that unit if it is an old copy of this job"
                    )
                new = False
                if path.read_text(encoding="utf-8") == text:
                    continue
            differs = True
            writes[path] = text
        (added if new else changed if differs else unchanged).append(job.name)
    wanted = {n for job in jobs for n in (job.service, job.timer)}
    removes = tuple(directory / n for n in owned if n not in wanted)
    removed = sorted({owned[p.name] for p in removes})
    return Plan(writes, removes, tuple(added), tuple(changed), tuple(removed), tuple(unchanged))


def check_credentials(jobs: list[Job], root: Path) -> None:
    """Every credential file exists, is a regular file, and only its owner may read it."""
    for job in jobs:
        for credential in job.credentials:
            path = under(root, credential.path)
            where = f"{job.source}:{job.line or 1}: jobs.{job.name}.credentials.{credential.name}"
            try:
                info = path.stat()
            except OSError as e:
                raise ObserverError(f"{where}: cannot read {credential.path}: {e.strerror}") from e
            if not stat.S_ISREG(info.st_mode):
                raise ObserverError(f"{where}: {credential.path} is not a regular file")
            if info.st_mode & 0o077 and not credential.encrypted:
                raise ObserverError(
                    f"{where}: {credential.path} may be read by others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}): run chmod 600 {credential.path}"
                )


def check_sandboxes(jobs: list[Job], root: Path, *, user_manager: bool = False) -> None:
    """Nothing a job needs is hidden or read-only in its own sandbox; its read_write_paths
    exist (systemd fails the run with 226/NAMESPACE otherwise)."""
    problems = [
        f"{job.source}:{job.line or 1}: {breakage}"
        for job in jobs
        for breakage in breakages(job, user_manager=user_manager)
    ]
    for job in jobs:
        for path in job.read_write_paths:
            if not os.path.lexists(under(root, PurePosixPath(path))):
                problems.append(
                    f"{job.source}:{job.line or 1}: job {job.name!r}: read_write_paths names "
                    f"{path}, which does not exist: create it (install -d {path}) or remove it"
                )
    if problems:
        raise ObserverError("\n".join(problems))


def check_schedules(jobs: list[Job]) -> None:
    """Each calendar expression, as systemd's own parser reads it."""
    for job in jobs:
        for written, settings in zip(job.schedules, job.timers, strict=True):
            for calendar in settings.calendar:
                expression = f"{calendar} {job.timezone}".strip()
                result = _analyze("calendar", expression)
                if result.returncode != 0:
                    problem = result.stderr.strip().splitlines()
                    raise ObserverError(
                        f"{job.source}:{job.line or 1}: jobs.{job.name}.schedule = "
                        f"{written!r}: systemd cannot read it as a calendar expression "
                        f"({problem[-1] if problem else 'invalid'}); see man systemd.time, "
                        "or write cron ('*/5 * * * *') or 'every 5m'"
                    )


# systemd-analyze calendar's labels of the times it lists: "Iter. #2" on 252,
# "Iteration #2" from 253 on (src/analyze/analyze-calendar.c).
_NEXT_TIME_LABEL = re.compile(r"Next elapse|Iter\. #\d+|Iteration #\d+")


def next_times(expression: str, count: int) -> list[str]:
    """The next ``count`` times systemd would fire ``expression`` (``systemd-analyze``)."""
    return calendar_times(_analyze("calendar", f"--iterations={count}", expression).stdout)


def calendar_times(output: str) -> list[str]:
    """The times ``systemd-analyze calendar`` lists, in order, on any release."""
    times = []
    for line in output.splitlines():
        label, _, value = line.strip().partition(": ")
        if _NEXT_TIME_LABEL.fullmatch(label):
            times.append(value.strip())
    return times


def verify(units: dict[str, JobUnits], jobs: list[Job], *, user_manager: bool = False) -> None:
    """``systemd-analyze verify`` on the generated units, in a directory of their own."""
    if not units:
        return
    # Under --root too, the units are verified as this machine would read them (systemd
    # 252's verify --root does not find units given by path).
    with tempfile.TemporaryDirectory(prefix="observer-jobs-") as tmp:
        paths = []
        for job in jobs:
            for name, text in ((job.service, units[job.name].service),
                               (job.timer, units[job.name].timer)):  # fmt: skip
                path = Path(tmp) / name
                path.write_text(text, encoding="utf-8")
                paths.append(str(path))
        scope = ["--user"] if user_manager else []
        result = _analyze(*scope, "verify", "--man=no", *paths)
    problems = [
        line.replace(f"{tmp}/", "")
        for line in result.stderr.splitlines()
        if tmp in line or "Command " in line
    ]
    if result.returncode != 0 or problems:
        raise ObserverError(
            "systemd-analyze verify refused the generated units:\n  "
            + "\n  ".join(problems or result.stderr.strip().splitlines())
        )


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as e:
        raise ObserverError("systemd-analyze is not installed (it comes with systemd)") from e


def write_file(path: Path, text: str) -> None:
    """Atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.observer-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o644)
    temporary.replace(path)


async def execute(plan: Plan, jobs: list[Job], bus: MessageBus) -> None:
    """Stop and disable removed timers, write the files, reload, enable and start timers."""
    old = {p: p.read_text(encoding="utf-8") for p in [*plan.writes, *plan.removes] if p.exists()}
    await _refuse_foreign_units(plan, bus)
    await _stop_removed_timers(plan, bus)
    try:
        await _install(plan, {job.name: job for job in jobs}, bus)
    except (ObserverError, OSError) as e:
        await _put_back(plan, old, bus)
        if isinstance(e, OSError):
            raise ObserverError(
                f"cannot write {e.filename}: {e.strerror}; nothing was changed"
            ) from e
        raise ObserverError(f"{e}; the unit files were put back as they were") from e


async def _manager(bus: MessageBus, member: str, signature: str = "", *args: object) -> list[Any]:
    """Call a method of systemd's manager."""
    from observer.metrics.dropin import call  # noqa: PLC0415

    return await call(bus, _MANAGER_PATH, _MANAGER, member, signature, list(args))


async def _refuse_foreign_units(plan: Plan, bus: MessageBus) -> None:
    """A new job's names must not be some other unit systemd already has (a vendor unit)."""
    from observer.metrics.dropin import get_property  # noqa: PLC0415

    for path in [*plan.writes, *plan.removes]:
        if path.exists():
            continue
        unit_path = (await _manager(bus, "LoadUnit", "s", path.name))[0]
        state = await get_property(bus, unit_path, "Unit", "LoadState")
        fragment = await get_property(bus, unit_path, "Unit", "FragmentPath")
        if state != "not-found" and fragment:
            raise ObserverError(f"a unit {path.name} already exists ({fragment}): rename the job")


async def _stop_removed_timers(plan: Plan, bus: MessageBus) -> None:
    removed_timers = [p.name for p in plan.removes if p.suffix == ".timer"]
    for timer in removed_timers:
        with contextlib.suppress(ObserverError):  # already stopped or never loaded
            path = (await _manager(bus, "LoadUnit", "s", timer))[0]
            job = (await _manager(bus, "StopUnit", "ss", timer, "replace"))[0]
            # systemd runs the stop job after answering: a timer that stops only after the
            # reload that removes its file stays loaded, and listed by `systemctl
            # list-timers`, until systemd collects it (seen once in CI).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_WAIT_SECONDS):
                    await job_ended(bus, job, path, every=0.02)
    if removed_timers:
        await _manager(bus, "DisableUnitFiles", "asb", removed_timers, False)


# How long a removed timer's stop job may take (it only cancels the timer's deadline).
_STOP_WAIT_SECONDS = 10.0


async def job_ended(bus: MessageBus, job: str, unit: str, every: float) -> None:
    """Until systemd's job ``job`` (an object path) is gone and its unit ``unit`` is no
    longer changing state. A job still queued leaves its unit's state as it was, so the
    state alone says nothing until the job is gone."""
    from observer.metrics.dropin import get_property  # noqa: PLC0415

    while True:
        try:
            await get_property(bus, job, "Job", "State")
        except ObserverError:  # the job is gone: it ended
            state = await get_property(bus, unit, "Unit", "ActiveState")
            if state not in ("activating", "deactivating", "reloading"):
                return
        await asyncio.sleep(every)


async def _install(plan: Plan, by_name: dict[str, Job], bus: MessageBus) -> None:
    """Write and remove the unit files, reload, enable the timers and (re)start them."""
    for path, text in plan.writes.items():
        write_file(path, text)
    for path in plan.removes:
        path.unlink(missing_ok=True)
    await _manager(bus, "Reload")
    timers = [by_name[n].timer for n in (*plan.added, *plan.changed)]
    if timers:
        await _manager(bus, "EnableUnitFiles", "asbb", timers, False, True)
    for name in plan.added:
        await _manager(bus, "StartUnit", "ss", by_name[name].timer, "replace")
    for name in plan.changed:
        await _manager(bus, "RestartUnit", "ss", by_name[name].timer, "replace")


async def _put_back(plan: Plan, old: dict[Path, str], bus: MessageBus) -> None:
    """The unit files as they were before ``_install``, and systemd reloaded to read them."""
    for path in plan.writes:
        if path not in old:
            path.unlink(missing_ok=True)
    for path, text in old.items():
        write_file(path, text)
    with contextlib.suppress(ObserverError):
        await _manager(bus, "Reload")
