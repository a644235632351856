"""Benchmark: how the reading commands and the daemon's costs grow with the history.

    .venv/bin/python -m bench.history_scale [--sizes 10000,100000,1000000] [--units 1000]
                                            [--no-daemon] [--no-report] [--keep DIR]
                                            [--python PATH] [--repeat N]

For each size it fills a fresh database through database.write_batch (``--units`` units, the
runs of each every 10 minutes up to now, two lines of output a run, one run in seven
failing; with ``--keep DIR`` a database kept there by an earlier run is reused), then
prints the whole-process wall and CPU time (median of ``--repeat``) of the anchors (``python
-c pass`` of the interpreter that runs observer, ``observer --version``, and ``journalctl -u
UNIT -n 20`` when this machine has a journal) and of ``observer --help`` and every reading
command beside its target (within 2 x ``python -c pass`` plus the time to print its answer:
the time that interpreter takes to write the same bytes, beyond its start), `observer
report` into an empty directory and again after one more run, and, with a real systemd
booted in a sandbox (root), the daemon's time from start to a complete `/metrics` (a series
for every unit), its CPU time over an idle minute and its RSS, with metrics, alerts and the
dashboard all on. The last lines compare each figure with the targets of the issue that
asked for it: at the largest size, `status` and `stats` within 150 ms and every reading
command within 1.5 x its time at the smallest (wall and CPU); `report` full within 20 s
and after one run within 0.3 s.

``--python`` names the interpreter whose installed observer is timed (default: this one);
time a pip-installed venv with compiled bytecode, not an editable checkout. The commands run
in the work directory, so that a checkout in the current directory does not shadow it.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.dashboard import fill, invocation
from bench.metrics_scrape import CLOCK_TICKS, BenchError, fetch, free_port, process, text_of
from observer.model import Run, Source
from observer.store import database
from tests.sandbox import Sandbox, can_boot

INTERVAL_USEC = 600 * 1_000_000
IDLE_SECONDS = 120.0
# Logged once each by the daemon: its start-up work is done when both have been.
SETTLED_LINES = (r"dashboard: wrote \d+ pages", r"alerts: first check made")
# Longer than the dashboard's min_interval_seconds (30) and its follow-up for late output
# (10): a rewrite, a second or more of CPU, would show in it.
QUIET_WINDOW, QUIET_CPU = 45.0, 0.05
REPORT_FULL_SECONDS, REPORT_ONE_RUN_SECONDS = 20.0, 0.3


class Timing:
    """Whole processes of one interpreter, run in a directory of their own."""

    def __init__(self, python: str, cwd: Path, repeat: int) -> None:
        self.python, self.cwd, self.repeat = python, cwd, repeat
        self.observer = [python, "-m", "observer"]

    def process(self, argv: list[str], repeat: int | None = None) -> tuple[float, float, bytes]:
        """The median wall and CPU seconds of running ``argv`` to its end, and its output."""
        walls, cpus, output = [], [], b""
        for _ in range(repeat or self.repeat):
            cpu, began = _children_cpu(), time.perf_counter()
            done = subprocess.run(argv, capture_output=True, cwd=self.cwd, check=False)
            walls.append(time.perf_counter() - began)
            cpus.append(_children_cpu() - cpu)
            if done.returncode != 0:
                raise BenchError(f"{' '.join(argv)} failed: {done.stderr.decode()}")
            output = done.stdout
        return statistics.median(walls), statistics.median(cpus), output

    def printing(self, output: bytes) -> tuple[float, float]:
        """What writing ``output`` to a pipe costs this interpreter beyond its start (wall and
        CPU): the median difference of the two, run one after the other."""
        path = self.cwd / "output.txt"
        path.write_bytes(output)
        code = f"import sys; sys.stdout.buffer.write(open({str(path)!r}, 'rb').read())"
        walls, cpus = [], []
        for _ in range(self.repeat):
            wall, cpu, _ = self.process([self.python, "-c", code], repeat=1)
            bare_wall, bare_cpu, _ = self.process([self.python, "-c", "pass"], repeat=1)
            walls.append(wall - bare_wall)
            cpus.append(cpu - bare_cpu)
        return max(0.0, statistics.median(walls)), max(0.0, statistics.median(cpus))


def _children_cpu() -> float:
    """User and system CPU seconds of the children ended so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def commands(db: Path, run_id: int) -> dict[str, list[str]]:
    """The reading commands, as a person types them."""
    unit = "job-001.service"
    return {
        "--help": ["--help"],
        "history UNIT": ["history", unit],
        "show ID": ["show", str(run_id)],
        "last-failure UNIT": ["last-failure", unit],
        "stats UNIT": ["stats", unit],
        "status": ["status"],
        "stats": ["stats"],
        "stats --since 24h": ["stats", "--since", "24h"],
        "runs --failed --unit 'job-05*' --since 10000d": [
            "runs", "--failed", "--unit", "job-05*", "--since", "10000d",
        ],
        "runs --since 24h": ["runs", "--since", "24h"],
        "runs -n 20": ["runs", "-n", "20", "--since", "10000d"],
        "runs --json --since 1h": ["runs", "--json", "--since", "1h"],
    }  # fmt: skip


def add_run(db: Path, units: int, runs: int) -> None:
    """One more run of one unit, as the daemon writes it."""
    now = time.time_ns() // 1000
    iid = invocation(1, runs + 1)
    conn = database.open_for_writing(db)
    try:
        database.write_batch(conn, database.Batch(runs=[Run(
            unit="job-001.service", invocation_id=iid, host="bench", source=Source.BUS,
            started_usec=now - 2_000_000, finished_usec=now, result="success",
            exit_code="exited", exit_status=0,
        )]))  # fmt: skip
    finally:
        conn.close()


def read_status_kib(pid: int) -> dict[str, int]:
    """The memory figures of /proc/PID/status, in KiB (VmRSS, VmHWM, ...)."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            figures[key] = int(value.split()[0])
    return figures


def daemon_figures(db: Path, units: int, workdir: Path, timing: Timing) -> dict[str, float]:
    """Start the daemon on ``db`` against a sandboxed systemd; time to a complete /metrics."""
    port = free_port()
    config = workdir / "observer.toml"
    config.write_text(
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        f'[dashboard]\ndirectory = "{workdir / "pages"}"\n'
        '[alerts]\nurls = ["json://127.0.0.1:9/"]\n'
    )
    url = f"http://127.0.0.1:{port}/metrics"
    with Sandbox.boot(timeout=60) as sandbox:
        argv = [
            *timing.observer, "daemon", "--db", str(db), "--config", str(config),
            "--bus-address", sandbox.bus_address, "--journal-dir", str(sandbox.journal_dir),
            "--journal-socket", str(sandbox.root / "run/systemd/journal/socket"),
        ]  # fmt: skip
        began = time.monotonic()
        with process(argv, workdir / "daemon.log") as pid:
            complete = None
            while complete is None and time.monotonic() - began < 300:
                try:
                    text = text_of(fetch(url)).decode()
                except OSError:
                    text = ""
                found = len(re.findall(r"^observer_last_run_success\{", text, re.M))
                if found >= units:
                    complete = time.monotonic() - began
                else:
                    time.sleep(0.05)
            if complete is None:
                raise BenchError("no complete /metrics within 300 s")
            # Start-up work done: the first dashboard pages written and the alerts' first
            # check made (both logged once; the journal read since the cursor and the timers
            # were committed long before), then what those writes set off (the dashboard's
            # follow-up for the runs recorded at start, min_interval_seconds after its first
            # write): a window longer than that with no such work in it.
            wait_for_lines(workdir / "daemon.log", SETTLED_LINES, began + 900)
            wait_for_quiet(pid, began + 1200)
            settled = time.monotonic() - began
            idle = idle_figures(pid)
    # The dashboard's rewrites run in a child process of their own: its peak, as logged.
    peaks = re.findall(r"its process peaked at (\d+) MiB", (workdir / "daemon.log").read_text())
    return {"metrics": complete, "settled": settled, **idle,
            "child": max((float(p) for p in peaks), default=0.0)}  # fmt: skip


def wait_for_lines(log: Path, patterns: tuple[str, ...], deadline: float) -> float:
    """When every pattern has appeared in ``log`` (monotonic time); BenchError past ``deadline``."""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if all(re.search(pattern, text, re.M) for pattern in patterns):
            return time.monotonic()
        time.sleep(0.2)
    raise BenchError(f"the daemon's start-up work did not end: no {patterns} in {log}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the daemon (all its threads) and of its children it has
    waited for: the dashboard's rewrites run in processes of their own."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(field) for field in fields[11:15]) / CLOCK_TICKS


def wait_for_quiet(pid: int, deadline: float) -> None:
    """Until a QUIET_WINDOW costs ``pid`` under QUIET_CPU CPU-s; BenchError past ``deadline``."""
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(QUIET_WINDOW)
        if cpu_seconds(pid) - before < QUIET_CPU:
            return
    raise BenchError(f"the daemon never had a quiet {QUIET_WINDOW:.0f} s after its start-up")


def threads_cpu_seconds(pid: int) -> float:
    """CPU time of the daemon's threads to the nanosecond (schedstat; /proc/PID/stat counts
    in ticks of 10 ms, coarse for an idle minute), its children not included."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def idle_figures(pid: int) -> dict[str, float]:
    """CPU-s a minute over IDLE_SECONDS with nothing happening (by ticks, children included,
    and by the threads' own nanoseconds), then RSS and its peak (MiB)."""
    before, threads_before = cpu_seconds(pid), threads_cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    idle = (cpu_seconds(pid) - before) * 60 / IDLE_SECONDS
    threads = (threads_cpu_seconds(pid) - threads_before) * 60 / IDLE_SECONDS
    status = read_status_kib(pid)
    return {"idle": idle, "idle threads": threads, "rss": status["VmRSS"] / 1024,
            "hwm": status["VmHWM"] / 1024}  # fmt: skip


def database_of(size: int, units: int, keep: Path | None, workdir: Path) -> Path:
    """A database of ``size`` runs: a copy of the one kept under ``keep``, else a new fill."""
    db = workdir / "observer.db"
    kept = None if keep is None else keep / f"observer-{size}.db"
    began = time.perf_counter()
    if kept is not None and kept.exists():
        shutil.copyfile(kept, db)
        database.open_for_writing(db).close()  # brings a kept one to this schema
        how = f"copied from {kept}"
    else:
        runs = max(1, size // units)
        now = time.time_ns() // 1000
        fill(db, units, runs, start_usec=now - runs * INTERVAL_USEC - units * 1_000_000,
             interval_usec=INTERVAL_USEC, lines_ok=2, lines_failed=2)  # fmt: skip
        how = "filled"
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db, kept)
    runs, newest_usec = _runs_in(db)
    # A kept database's runs end when it was filled: the windows (--since 1h, 24h) of the
    # commands hold fewer runs, down to none, the longer ago that was.
    age = (time.time_ns() // 1000 - newest_usec) / 3.6e9
    print(f"\n{runs:,} runs of {units:,} units, {db.stat().st_size / 2**20:.0f} MiB, "
          f"{how} in {time.perf_counter() - began:.0f} s; newest run {age:.1f} h ago",
          flush=True)  # fmt: skip
    return db


def _runs_in(db: Path) -> tuple[int, int]:
    """How many runs ``db`` holds, and when the newest started (microseconds)."""
    with sqlite3.connect(db) as conn:
        count, newest = conn.execute(
            "SELECT COUNT(*), MAX(COALESCE(started_usec, finished_usec)) FROM runs"
        ).fetchone()
    return int(count), int(newest or 0)


def anchors(timing: Timing, db: Path) -> dict[str, float]:
    """Python's own start, `observer --version`, and journalctl where there is a journal."""
    figures = {}
    wall, cpu, _ = timing.process([timing.python, "-c", "pass"])
    figures["python -c pass"], figures["python -c pass cpu"] = wall, cpu
    print(f"  {'python -c pass':48} {wall * 1000:7.0f} ms (cpu {cpu * 1000:.0f})", flush=True)
    version, version_cpu, _ = timing.process([*timing.observer, "--version"])
    figures["observer --version"] = version
    print(f"  {'observer --version':48} {version * 1000:7.0f} ms, target {2 * wall * 1000:.0f} "
          f"{_met(version <= 2 * wall)}; cpu {version_cpu * 1000:.0f} ms, target "
          f"{2 * cpu * 1000:.0f} {_met(version_cpu <= 2 * cpu)}", flush=True)  # fmt: skip
    for name, code in floors(db).items():
        wall, cpu, _ = timing.process([timing.python, "-c", code])
        figures[name], figures[f"{name} cpu"] = wall, cpu
        ratio = cpu / figures["python -c pass cpu"]
        print(f"  {name:48} {wall * 1000:7.0f} ms (cpu {cpu * 1000:.0f}, "
              f"{ratio:.2f} x python -c pass)", flush=True)  # fmt: skip
    journal = _journal_unit()
    if journal is None:
        print("  journalctl -u UNIT -n 20: skipped, no journal on this machine", flush=True)
    else:
        wall, cpu, _ = timing.process(["journalctl", "-u", journal, "-n", "20", "--no-pager"])
        figures["journalctl -u UNIT -n 20"] = wall
        print(f"  {f'journalctl -u {journal} -n 20':48} {wall * 1000:7.0f} ms "
              f"(cpu {cpu * 1000:.0f})", flush=True)  # fmt: skip
    return figures


def floors(db: Path) -> dict[str, str]:
    """What a command pays before any of observer's code, as code for ``python -c``: a
    reading command opens the database and reads it with sqlite3; --help is argparse's."""
    uri = f"file:{db}?mode=ro"
    return {
        "floor: python, sqlite3, a query": (
            f"import sqlite3; sqlite3.connect({uri!r}, uri=True)"
            ".execute('SELECT id FROM runs LIMIT 1').fetchall()"
        ),
        "floor of --help: argparse's help": (
            "import argparse; argparse.ArgumentParser(prog='observer').format_help()"
        ),
    }


def _journal_unit() -> str | None:
    """A unit with entries in this machine's journal, if it has one."""
    try:
        done = subprocess.run(
            ["journalctl", "-n", "1", "-o", "cat", "--output-fields=_SYSTEMD_UNIT", "-q",
             "_SYSTEMD_UNIT=systemd-journald.service"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "systemd-journald.service" if done.returncode == 0 and done.stdout.strip() else None


def measure(size: int, units: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    db = database_of(size, units, args.keep, workdir)
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT MAX(id) / 2 FROM runs").fetchone()[0]
    timing = Timing(args.python, workdir, args.repeat)
    figures = anchors(timing, db)
    start, start_cpu = figures["python -c pass"], figures["python -c pass cpu"]
    for name, argv in commands(db, run_id).items():
        reads = [] if argv[0].startswith("-") else ["--db", str(db)]  # --help reads nothing
        wall, cpu, output = timing.process([*timing.observer, *argv, *reads])
        printing, printing_cpu = timing.printing(output)
        target, cpu_target = 2 * start + printing, 2 * start_cpu + printing_cpu
        figures[name], figures[f"{name} target"] = wall, target
        figures[f"{name} cpu"], figures[f"{name} cpu target"] = cpu, cpu_target
        print(f"  {name:48} {wall * 1000:7.0f} ms, target {target * 1000:.0f} "
              f"(2 x {start * 1000:.0f} + printing {len(output):,} bytes {printing * 1000:.0f}) "
              f"{_met(wall <= target)}; cpu {cpu * 1000:.0f} ms, target {cpu_target * 1000:.0f} "
              f"{_met(cpu <= cpu_target)}", flush=True)  # fmt: skip
    if args.report:
        figures.update(report_figures(db, units, size, workdir, timing))
    if args.daemon:
        daemon = daemon_figures(db, units, workdir, timing)
        print(f"  daemon: complete /metrics {daemon['metrics']:.2f} s after start; start-up work "
              f"done after {daemon['settled']:.0f} s; idle {daemon['idle']:.3f} CPU-s per minute "
              f"(its threads' own {daemon['idle threads']:.3f});"
              f" RSS {daemon['rss']:.1f} MiB (peak {daemon['hwm']:.1f}; the dashboard's own "
              f"process at its first write {daemon['child']:.0f})", flush=True)  # fmt: skip
        figures.update({f"daemon {k}": v for k, v in daemon.items()})
    return figures


def report_figures(
    db: Path, units: int, size: int, workdir: Path, timing: Timing
) -> dict[str, float]:
    """`observer report` into an empty directory, then again after one more run."""
    argv = [*timing.observer, "report", "--db", str(db), "--output", str(workdir / "report")]
    figures = {}
    figures["report (full)"], cpu, _ = timing.process(argv, repeat=1)
    print(f"  {'report (full)':48} {figures['report (full)']:7.1f} s (cpu {cpu:.1f}; target "
          f"{REPORT_FULL_SECONDS:.0f})", flush=True)  # fmt: skip
    add_run(db, units, max(1, size // units))
    figures["report (after one run)"], cpu, _ = timing.process(argv, repeat=1)
    print(f"  {'report (after one run)':48} {figures['report (after one run)']:7.2f} s "
          f"(cpu {cpu:.2f}; target {REPORT_ONE_RUN_SECONDS})", flush=True)  # fmt: skip
    return figures


def _ratio(largest: dict[str, float], smallest: dict[str, float], name: str) -> float:
    return largest[name] / smallest[name] if smallest[name] > 0 else float("inf")


def _met(met: bool) -> str:
    return "met" if met else "NOT met"


def verdict(results: dict[int, dict[str, float]]) -> list[str]:
    """Each target, met or not."""
    smallest, largest = results[min(results)], results[max(results)]
    lines = []
    for name in ("status", "stats"):
        ms = largest[name] * 1000
        lines.append(f"{_met(ms <= 150)}: {name} {ms:.0f} ms (target 150 ms)")
    for size, figures in sorted(results.items()):
        for name in commands(Path(), 0):
            wall, target = figures[name], figures[f"{name} target"]
            cpu, cpu_target = figures[f"{name} cpu"], figures[f"{name} cpu target"]
            lines.append(
                f"{_met(wall <= target)} (cpu: {_met(cpu <= cpu_target)}): {name} at {size:,} "
                f"runs {wall * 1000:.0f} ms, cpu {cpu * 1000:.0f} ms (targets {target * 1000:.0f}"
                f", {cpu_target * 1000:.0f}: 2 x python -c pass + printing)"
            )
    for name in commands(Path(), 0):
        # CPU too: on a shared machine the wall time of a short process is mostly waiting.
        ratio, cpu_ratio = largest[name] / smallest[name], _ratio(largest, smallest, f"{name} cpu")
        lines.append(f"{_met(ratio <= 1.5)} (cpu: {_met(cpu_ratio <= 1.5)}): {name} x{ratio:.2f} "
                     f"(cpu x{cpu_ratio:.2f}) from the smallest to the largest size "
                     "(target 1.5)")  # fmt: skip
    if "report (full)" in largest:
        full, one = largest["report (full)"], largest["report (after one run)"]
        lines.append(f"{_met(full <= REPORT_FULL_SECONDS)}: report full {full:.1f} s "
                     f"(target {REPORT_FULL_SECONDS:.0f} s)")  # fmt: skip
        lines.append(f"{_met(one <= REPORT_ONE_RUN_SECONDS)}: report after one run {one:.2f} s "
                     f"(target {REPORT_ONE_RUN_SECONDS} s)")  # fmt: skip
    if "daemon metrics" in largest:
        d = {k: largest[f"daemon {k}"] for k in ("metrics", "idle", "rss")}
        lines.append(f"{_met(d['metrics'] <= 1)}: complete /metrics "
                     f"{d['metrics']:.2f} s after start (target 1 s)")  # fmt: skip
        lines.append(f"{_met(d['idle'] <= 0.01)}: idle {d['idle']:.3f} "
                     "CPU-s per minute (target 0.01)")  # fmt: skip
        lines.append(f"{_met(d['rss'] <= 50)}: RSS {d['rss']:.1f} MiB (target 50)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="runs, comma-separated")
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--no-daemon", dest="daemon", action="store_false")
    parser.add_argument("--no-report", dest="report", action="store_false")
    parser.add_argument(
        "--keep", type=Path, help="keep each size's database under DIR, or reuse the one there"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter whose observer is timed"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (median)")
    args = parser.parse_args(argv)
    if args.daemon and (reason := can_boot()) is not None:
        print(f"bench: cannot boot a sandbox ({reason}); pass --no-daemon", file=sys.stderr)
        return 1
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        workdir = Path(tempfile.mkdtemp(prefix=f"observer-scale-{size}-"))
        try:
            results[size] = measure(size, args.units, args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for line in verdict(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
