"""Benchmark: a central observer catching up with its hosts' received journals; prints figures.

    .venv/bin/python -m bench.fleet_ingest [--hosts 50] [--timers 50] [--hours 24]
                                           [--week-timers 50] [--repeat 3] [--cpu 0]

It writes real journal files with ``systemd-journal-remote`` (the export format on its
stdin, every host's entries in one file, as the receiver of docs/fleet.md does): for each
run the records PID 1 writes, ten lines of output and the run record the host's own observer
writes. Then it starts `observer daemon --fleet-dir` on a fresh database, pinned to one
core, and polls the database until every run is there with its run record and its output;
it prints the daemon's CPU time and wall time for it and checks every host's rows. Needs
no sandbox and no root (root is fine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from observer.fleet.records import record_fields
from observer.model import Run, Source

REMOTE = Path("/lib/systemd/systemd-journal-remote")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HOUR_USEC = 3600 * 1_000_000
LINES_PER_RUN = 10
# The targets of issue 25.
RUNS_PER_SECOND = 500
ENTRIES_PER_SECOND = 5000
FIRST_START_SECONDS = 60.0
# The database grew for this long: the daemon has read all it will (some runs are missing).
STALLED_SECONDS = 30


STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
STARTED = "39f53479d3a045ac8e11786248231fbf"
START_FAILED = "be02cf6855d2428ba40df7e9d022f03d"
MAIN_EXITED = "98e322203f7a4ed290d09fe03c09fe15"
DEACTIVATED = "7ad2d189f7e94e70a38c781354912448"
FAILED = "d9b373ed55a64feb8242e02dbe79a49c"

# What journald adds to every entry of PID 1 (systemd 252, Debian 12).
_PID1_FIELDS = (
    "PRIORITY=6\nSYSLOG_FACILITY=3\nSYSLOG_IDENTIFIER=systemd\n_PID=1\n_UID=0\n_GID=0\n"
    "_COMM=systemd\n_EXE=/usr/lib/systemd/systemd\n"
    "_CMDLINE=/lib/systemd/systemd --system --deserialize=31\n_CAP_EFFECTIVE=1ffffffffff\n"
    "_SYSTEMD_CGROUP=/init.scope\n_SYSTEMD_UNIT=init.scope\n_SYSTEMD_SLICE=-.slice\n"
    "_TRANSPORT=journal\nCODE_FILE=src/core/unit.c\nCODE_FUNC=unit_log_success\nCODE_LINE=5553\n"
)


class BenchError(Exception):
    """The benchmark could not be set up or run."""


@dataclass(frozen=True, slots=True)
class Load:
    """What the hosts' journals hold: ``timers`` units on each host, each run hourly."""

    hosts: int
    timers: int
    hours: int

    @property
    def runs(self) -> int:
        return self.hosts * self.timers * self.hours

    def host(self, number: int) -> str:
        return f"web{number:03d}"


@dataclass(frozen=True, slots=True)
class Written:
    """The journal written: where, and how many entries it holds."""

    directory: Path
    entries: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Measured:
    """One catch-up of the daemon: its CPU and wall time until every run was in the database."""

    cpu_seconds: float
    wall_seconds: float
    problems: list[str]


# -- the journal ---------------------------------------------------------------------------


def fails(hour: int, timer: int) -> bool:
    """One run in seven fails (exit status 3)."""
    return (hour + timer) % 7 == 0


@dataclass(frozen=True, slots=True)
class HostBoot:
    """One host's boot: its name, boot and machine IDs, and when it booted."""

    name: str
    boot_id: str
    machine_id: str
    booted_usec: int

    def header(self, realtime: int) -> str:
        monotonic = realtime - self.booted_usec
        return (
            f"__REALTIME_TIMESTAMP={realtime}\n__MONOTONIC_TIMESTAMP={monotonic}\n"
            f"_BOOT_ID={self.boot_id}\n_MACHINE_ID={self.machine_id}\n_HOSTNAME={self.name}\n"
        )


def pid1_record(boot: HostBoot, realtime: int, unit: str, invocation: str, fields: str) -> str:
    return (
        f"{boot.header(realtime)}{_PID1_FIELDS}_SOURCE_REALTIME_TIMESTAMP={realtime - 40}\n"
        f"UNIT={unit}\nINVOCATION_ID={invocation}\n{fields}\n"
    )


def output_line(boot: HostBoot, realtime: int, unit: str, invocation: str, pid: int, n: int) -> str:
    return (
        f"{boot.header(realtime)}PRIORITY=6\nSYSLOG_FACILITY=3\nSYSLOG_IDENTIFIER=job\n"
        f"_PID={pid}\n_UID=0\n_GID=0\n_COMM=job\n_EXE=/usr/bin/bash\n"
        f"_CMDLINE=/bin/bash /usr/local/bin/job\n_CAP_EFFECTIVE=1ffffffffff\n"
        f"_SYSTEMD_CGROUP=/system.slice/{unit}\n_SYSTEMD_UNIT={unit}\n"
        f"_SYSTEMD_SLICE=system.slice\n_SYSTEMD_INVOCATION_ID={invocation}\n_TRANSPORT=stdout\n"
        f"_STREAM_ID={invocation[::-1]}\nMESSAGE=step {n} of {LINES_PER_RUN}: copied 4096 files "
        f"(12.5 MiB) to /srv/backup/{unit}\n\n"
    )


def run_record(boot: HostBoot, realtime: int, run: Run, observer_pid: int) -> str:
    """The run record the host's own observer writes 2 s after the run ended."""
    fields = record_fields(run, LINES_PER_RUN, LINES_PER_RUN * 60)
    body = "".join(f"{name}={value}\n" for name, value in fields.items())
    return (
        f"{boot.header(realtime)}SYSLOG_IDENTIFIER=observer\n_PID={observer_pid}\n_UID=0\n"
        f"_GID=0\n_COMM=observer\n_EXE=/usr/bin/python3.11\n"
        f"_CMDLINE=/usr/bin/python3 /usr/bin/observer daemon\n_CAP_EFFECTIVE=1ffffffffff\n"
        f"_SYSTEMD_CGROUP=/system.slice/observer.service\n_SYSTEMD_UNIT=observer.service\n"
        f"_SYSTEMD_SLICE=system.slice\n_TRANSPORT=journal\n{body}\n"
    )


def run_entries(boot: HostBoot, start: int, timer: int, hour: int) -> list[tuple[int, str]]:
    """The entries of one run of ``job-NN.service`` (started by its timer at ``start``)."""
    unit = f"job-{timer:02d}.service"
    invocation = uuid.uuid4().hex
    job_id = 1000 + hour * 100 + timer
    pid = 2000 + (hour * 97 + timer) % 30000
    failed = fails(hour, timer)
    end = start + LINES_PER_RUN * 1000 + 500_000
    job = f"JOB_ID={job_id}\nJOB_TYPE=start\n"
    entries = [
        (
            start,
            pid1_record(
                boot,
                start,
                unit,
                invocation,
                f"MESSAGE_ID={STARTING}\nMESSAGE=Starting {unit}...\n{job}",
            ),
        ),
    ]
    for n in range(LINES_PER_RUN):
        at = start + 1000 * (n + 1)
        entries.append((at, output_line(boot, at, unit, invocation, pid, n + 1)))
    ends: tuple[str, ...]
    if failed:
        ends = (
            f"MESSAGE_ID={MAIN_EXITED}\nMESSAGE={unit}: Main process exited, code=exited, "
            f"status=3/NOTIMPLEMENTED\nEXIT_CODE=exited\nEXIT_STATUS=3\nCOMMAND=ExecStart\n",
            f"MESSAGE_ID={FAILED}\nMESSAGE={unit}: Failed with result 'exit-code'.\n"
            "UNIT_RESULT=exit-code\n",
            f"MESSAGE_ID={START_FAILED}\nMESSAGE=Failed to start {unit}.\n{job}JOB_RESULT=failed\n",
        )
    else:
        ends = (
            f"MESSAGE_ID={DEACTIVATED}\nMESSAGE={unit}: Deactivated successfully.\n",
            f"MESSAGE_ID={STARTED}\nMESSAGE=Finished {unit}.\n{job}JOB_RESULT=done\n",
        )
    for i, fields in enumerate(ends):
        entries.append((end + i, pid1_record(boot, end + i, unit, invocation, fields)))
    run = Run(
        unit=unit,
        invocation_id=invocation,
        host=boot.name,
        source=Source.BUS,
        started_usec=start,
        finished_usec=end,
        result="exit-code" if failed else "success",
        exit_code="exited",
        exit_status=3 if failed else 0,
        trigger=f"job-{timer:02d}.timer",
        restarts=0,
        boot_id=boot.boot_id,
        cpu_seconds=0.012,
    )
    entries.append((end + 2_000_000, run_record(boot, end + 2_000_000, run, 700)))
    return entries


def hour_entries(load: Load, boots: list[HostBoot], hour: int, first_usec: int) -> list[str]:
    """Every host's entries of one hour, in time order (as the receiver gets them)."""
    entries: list[tuple[int, str]] = []
    for number, boot in enumerate(boots):
        for timer in range(load.timers):
            # Timers spread over the hour; hosts a few milliseconds apart.
            start = first_usec + hour * HOUR_USEC + timer * 60_000_000 + number * 7_000
            entries += run_entries(boot, start, timer, hour)
    entries.sort(key=lambda e: e[0])
    return [text for _, text in entries]


def write_journal(load: Load, directory: Path, last_usec: int) -> Written:
    """The hosts' journals as systemd-journal-remote writes them, ending at ``last_usec``."""
    if not REMOTE.exists():
        raise BenchError(f"{REMOTE} is missing: apt-get install systemd-journal-remote")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.journal"):  # journal-remote would add to them
        old.unlink()
    first_usec = last_usec - load.hours * HOUR_USEC
    boots = [
        HostBoot(load.host(n), uuid.uuid4().hex, uuid.uuid4().hex, first_usec - HOUR_USEC)
        for n in range(load.hosts)
    ]
    began = time.monotonic()
    remote = subprocess.Popen(
        [str(REMOTE), f"--output={directory / 'all.journal'}", "--split-mode=none", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert remote.stdin is not None
    entries = 0
    for hour in range(load.hours):
        texts = hour_entries(load, boots, hour, first_usec)
        entries += len(texts)
        remote.stdin.write("".join(texts).encode())
    remote.stdin.close()
    if remote.wait() != 0:
        raise BenchError(f"systemd-journal-remote failed: {remote.stderr.read().decode()}")  # type: ignore[union-attr]
    return Written(directory, entries, time.monotonic() - began)


# -- the daemon ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def recorded(db: Path) -> tuple[int, int]:
    """Runs recorded with their run record (the trigger) and output lines, so far."""
    if not db.exists():
        return 0, 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        try:
            runs = c.execute(
                "SELECT count(*) FROM runs WHERE finished_usec IS NOT NULL AND trigger IS NOT NULL"
            ).fetchone()[0]
            lines = c.execute("SELECT coalesce(sum(lines), 0) FROM output_stats").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0, 0
    return int(runs), int(lines)


def catch_up(load: Load, journal: Path, workdir: Path, cpu: int) -> Measured:
    """Start a central observer on ``journal`` with a fresh database; wait for every run."""
    db = workdir / "central.db"
    for stale in workdir.glob("central.db*"):
        stale.unlink()
    config = workdir / "observer.toml"
    # backfill_days: the whole week, however long after writing it a catch-up starts.
    config.write_text('[metrics]\nlisten = ""\n[journal]\nbackfill_days = 8\n')
    # setpriv: the daemon ends with the benchmark, even when that is killed.
    argv = ["setpriv", "--pdeathsig", "TERM", "--", "taskset", "-c", str(cpu)]
    argv += [sys.executable, "-m", "observer", "daemon"]
    argv += ["--fleet-dir", str(journal), "--db", str(db), "--config", str(config)]
    log = (workdir / "daemon.log").open("wb")
    began = time.monotonic()
    daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wall = wait_for_every_run(load, db, daemon) - began
        spent = cpu_seconds(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
    return Measured(spent, wall, check(load, db))


def wait_for_every_run(load: Load, db: Path, daemon: subprocess.Popen[bytes]) -> float:
    """When the database held every run and line; or when it stopped growing (then wrong)."""
    wanted = (load.runs, load.runs * LINES_PER_RUN)
    last, changed = (0, 0), time.monotonic()
    while (got := recorded(db)) != wanted:
        if daemon.poll() is not None:
            raise BenchError(f"the daemon exited ({daemon.returncode}): see its log")
        if got != last:
            last, changed = got, time.monotonic()
        elif time.monotonic() - changed > STALLED_SECONDS:
            print(f"  stalled at {got} of {wanted} (runs, lines)", file=sys.stderr)
            break
        time.sleep(0.2)
    return time.monotonic()


def check(load: Load, db: Path) -> list[str]:
    """What is wrong in the database: every host must hold each of its runs once, right."""
    problems = []
    with contextlib.closing(sqlite3.connect(db)) as c:
        rows = {
            host: (runs, failed, lines)
            for host, runs, failed, lines in c.execute(
                "SELECT host, count(*), sum(result = 'exit-code' AND exit_status = 3),"
                " sum(coalesce(s.lines, 0)) FROM runs LEFT JOIN output_stats s USING"
                " (invocation_id) GROUP BY host"
            )
        }
    failing = sum(fails(h, t) for h in range(load.hours) for t in range(load.timers))
    for n in range(load.hosts):
        host = load.host(n)
        want = (load.timers * load.hours, failing, load.timers * load.hours * LINES_PER_RUN)
        if (got := rows.pop(host, None)) != want:
            problems.append(f"{host}: (runs, failed, lines) {got} instead of {want}")
    problems += [f"runs of a host never written: {host}" for host in rows]
    return problems


# -- the figures ---------------------------------------------------------------------------


def measure(load: Load, args: argparse.Namespace, workdir: Path) -> tuple[Written, Measured]:
    """Write ``load``'s journal, then catch up with it ``--repeat`` times (the median)."""
    written = write_journal(load, workdir / f"journal-{load.hosts}x{load.timers}", time_now())
    taken = [catch_up(load, written.directory, workdir, args.cpu) for _ in range(args.repeat)]
    problems = [p for m in taken for p in m.problems]
    median = Measured(
        statistics.median(m.cpu_seconds for m in taken),
        statistics.median(m.wall_seconds for m in taken),
        problems,
    )
    return written, median


def time_now() -> int:
    # The newest runs ended a few minutes ago.
    return int(time.time() * 1e6)


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def report(load: Load, written: Written, measured: Measured, repeat: int) -> None:
    runs_per_cpu = load.runs / measured.cpu_seconds
    entries_per_cpu = written.entries / measured.cpu_seconds
    print(
        f"backlog: {load.hosts} hosts x {load.timers} timers x {load.hours} h = {load.runs:,} runs,"
        f" {written.entries:,} entries ({written.entries / load.runs:.1f} a run; journal written"
        f" in {written.seconds:.0f} s); median of {repeat}"
    )
    print(
        f"  runs per CPU-second (one core): {runs_per_cpu:,.0f}"
        f"   target >= {RUNS_PER_SECOND}: {verdict(runs_per_cpu >= RUNS_PER_SECOND)}"
    )
    print(
        f"  entries per CPU-second:         {entries_per_cpu:,.0f}"
        f"   target >= {ENTRIES_PER_SECOND}: {verdict(entries_per_cpu >= ENTRIES_PER_SECOND)}"
    )
    print(
        f"  catch-up: {measured.cpu_seconds:.1f} CPU-s, {measured.wall_seconds:.1f} s wall"
        f" (at the target: {load.runs / RUNS_PER_SECOND:.0f} CPU-s)"
    )


def report_first_start(load: Load, measured: Measured, repeat: int) -> None:
    print(
        f"first start: 1 host, {load.timers} timers x {load.hours} h = {load.runs:,} runs;"
        f" median of {repeat}"
    )
    print(
        f"  to the last run: {measured.wall_seconds:.1f} s wall ({measured.cpu_seconds:.1f} CPU-s)"
        f"   target <= {FIRST_START_SECONDS:.0f} s:"
        f" {verdict(measured.wall_seconds <= FIRST_START_SECONDS)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fleet_ingest", description=__doc__)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--timers", type=int, default=50)
    parser.add_argument("--hours", type=int, default=24, help="the backlog (a day)")
    parser.add_argument("--week-timers", type=int, default=50, help="first start: 0 leaves it out")
    parser.add_argument("--repeat", type=int, default=3, help="catch-ups measured (the median)")
    parser.add_argument("--cpu", type=int, default=0, help="the core the daemon is pinned to")
    parser.add_argument("--workdir", type=Path, help="keep the journals, database and log here")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        try:
            if args.hosts and args.timers and args.hours:
                load = Load(args.hosts, args.timers, args.hours)
                written, measured = measure(load, args, workdir)
                report(load, written, measured, args.repeat)
                problems += measured.problems
            if args.week_timers:
                week = Load(1, args.week_timers, 7 * 24)
                _, measured = measure(week, args, workdir)
                report_first_start(week, measured, args.repeat)
                problems += measured.problems
        except BenchError as e:
            print(f"fleet_ingest: {e}", file=sys.stderr)
            return 1
        for problem in problems:
            print(f"WRONG: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
