"""Benchmark: how the reading commands and the daemon's costs grow with the history.

    .venv/bin/python -m bench.history_scale [--sizes 10000,100000,1000000] [--units 1000]
                                            [--no-daemon] [--no-report] [--keep DIR]

For each size it fills a fresh database through database.write_batch (``--units`` units, the
runs of each every 10 minutes up to now, two lines of output a run, one run in seven
failing), then prints the whole-process time (median of 3) of every reading command,
`observer report` into an empty directory and again after one more run, and, with a real
systemd booted in a sandbox (root), the daemon's time from start to a complete `/metrics`
(a series for every unit), its CPU time over an idle minute and its RSS, with metrics,
alerts and the dashboard all on. The last lines compare each figure with the targets of
the issue that asked for it: at the largest size, `status` and `stats` within 150 ms and
every reading command within 1.5 x its time at the smallest.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.dashboard import fill, invocation
from bench.metrics_scrape import BenchError, cpu_seconds, fetch, free_port, process, text_of
from observer.model import Run, Source
from observer.store import database
from tests.sandbox import Sandbox, can_boot

INTERVAL_USEC = 600 * 1_000_000
OBSERVER = [sys.executable, "-m", "observer"]
IDLE_SECONDS = 120.0
# Logged once each by the daemon: its start-up work is done when both have been.
SETTLED_LINES = (r"dashboard: wrote \d+ pages", r"alerts: first check made")
# Longer than the dashboard's min_interval_seconds (30) and its follow-up for late output
# (10): a rewrite, a second or more of CPU, would show in it.
QUIET_WINDOW, QUIET_CPU = 45.0, 0.05


def commands(db: Path, run_id: int) -> dict[str, list[str]]:
    """The reading commands, as a person types them."""
    unit = "job-001.service"
    return {
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


def whole_process(argv: list[str], repeat: int = 3) -> float:
    """The median wall time of running ``argv`` to its end, output thrown away."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed: {done.stderr.decode()}")
    return statistics.median(times)


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


def daemon_figures(db: Path, units: int, workdir: Path) -> dict[str, float]:
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
            *OBSERVER, "daemon", "--db", str(db), "--config", str(config),
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
    return {"metrics": complete, "settled": settled, **idle}


def wait_for_lines(log: Path, patterns: tuple[str, ...], deadline: float) -> float:
    """When every pattern has appeared in ``log`` (monotonic time); BenchError past ``deadline``."""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if all(re.search(pattern, text, re.M) for pattern in patterns):
            return time.monotonic()
        time.sleep(0.2)
    raise BenchError(f"the daemon's start-up work did not end: no {patterns} in {log}")


def wait_for_quiet(pid: int, deadline: float) -> None:
    """Until a QUIET_WINDOW costs ``pid`` under QUIET_CPU CPU-s; BenchError past ``deadline``."""
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(QUIET_WINDOW)
        if cpu_seconds(pid) - before < QUIET_CPU:
            return
    raise BenchError(f"the daemon never had a quiet {QUIET_WINDOW:.0f} s after its start-up")


def idle_figures(pid: int) -> dict[str, float]:
    """CPU-s a minute over IDLE_SECONDS with nothing happening, then RSS and its peak (MiB)."""
    before = cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    idle = (cpu_seconds(pid) - before) * 60 / IDLE_SECONDS
    status = read_status_kib(pid)
    return {"idle": idle, "rss": status["VmRSS"] / 1024, "hwm": status["VmHWM"] / 1024}


def measure(size: int, units: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    db = workdir / "observer.db"
    runs = max(1, size // units)
    now = time.time_ns() // 1000
    began = time.perf_counter()
    kept = args.keep / f"observer-{size}.db" if args.keep else None
    if kept is not None and kept.exists():
        shutil.copyfile(kept, db)  # as filled before: no daemon ran on it
    else:
        fill(db, units, runs, start_usec=now - runs * INTERVAL_USEC - units * 1_000_000,
             interval_usec=INTERVAL_USEC, lines_ok=2, lines_failed=2)  # fmt: skip
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db, kept)
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        run_id = conn.execute("SELECT MAX(id) / 2 FROM runs").fetchone()[0]
    print(f"\n{total:,} runs of {units:,} units, {db.stat().st_size / 2**20:.0f} MiB, "
          f"filled in {time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
    figures: dict[str, float] = {}
    for name, argv in commands(db, run_id).items():
        figures[name] = whole_process([*OBSERVER, *argv, "--db", str(db)])
        print(f"  {name:48} {figures[name] * 1000:9.0f} ms", flush=True)
    if args.report:
        out = workdir / "report"
        report: Callable[[], float] = lambda: whole_process(  # noqa: E731
            [*OBSERVER, "report", "--db", str(db), "--output", str(out)], repeat=1
        )
        figures["report (full)"] = report()
        add_run(db, units, runs)
        figures["report (after one run)"] = report()
        for name in ("report (full)", "report (after one run)"):
            print(f"  {name:48} {figures[name] * 1000:9.0f} ms", flush=True)
    if args.daemon:
        daemon = daemon_figures(db, units, workdir)
        print(f"  daemon: complete /metrics {daemon['metrics']:.2f} s after start; start-up work "
              f"done after {daemon['settled']:.0f} s; idle {daemon['idle']:.3f} CPU-s per minute;"
              f" RSS {daemon['rss']:.1f} MiB (peak {daemon['hwm']:.1f})", flush=True)  # fmt: skip
        figures.update({f"daemon {k}": v for k, v in daemon.items()})
    return figures


def verdict(results: dict[int, dict[str, float]]) -> list[str]:
    """Each target, met or not."""
    smallest, largest = results[min(results)], results[max(results)]
    lines = []
    for name in ("status", "stats"):
        ms = largest[name] * 1000
        lines.append(f"{'met' if ms <= 150 else 'NOT met'}: {name} {ms:.0f} ms (target 150 ms)")
    for name in commands(Path(), 0):
        ratio = largest[name] / smallest[name]
        lines.append(f"{'met' if ratio <= 1.5 else 'NOT met'}: {name} x{ratio:.2f} from the "
                     f"smallest to the largest size (target 1.5)")  # fmt: skip
    if "report (full)" in largest:
        full, one = largest["report (full)"], largest["report (after one run)"]
        lines.append(
            f"{'met' if full <= 20 else 'NOT met'}: report full {full:.1f} s (target 20 s)"
        )
        lines.append(f"{'met' if one <= 0.5 else 'NOT met'}: report after one run {one:.2f} s "
                     "(target 0.5 s)")  # fmt: skip
    if "daemon metrics" in largest:
        d = {k: largest[f"daemon {k}"] for k in ("metrics", "idle", "rss")}
        lines.append(f"{'met' if d['metrics'] <= 1 else 'NOT met'}: complete /metrics "
                     f"{d['metrics']:.2f} s after start (target 1 s)")  # fmt: skip
        lines.append(f"{'met' if d['idle'] <= 0.01 else 'NOT met'}: idle {d['idle']:.3f} "
                     "CPU-s per minute (target 0.01)")  # fmt: skip
        lines.append(f"{'met' if d['rss'] <= 50 else 'NOT met'}: RSS {d['rss']:.1f} MiB "
                     "(target 50)")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="runs, comma-separated")
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--no-daemon", dest="daemon", action="store_false")
    parser.add_argument("--no-report", dest="report", action="store_false")
    parser.add_argument(
        "--keep", type=Path, help="keep each size's filled database under DIR, and reuse it"
    )
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
