"""Benchmark: what `observer runs --follow` costs while nothing happens, and how soon it prints.

    .venv/bin/python -m bench.follow_idle [--runs 100000] [--idle-seconds 60] [--samples 20]

Fills a fresh database through ``database.write_batch`` (``--runs`` finished runs over 100
units, a few of them still running), starts ``observer runs --follow --json`` on it as a
process, and prints:

- its start-up time (process start to its first look at the store, which reads the
  baseline: the newest run ID and the runs still running);
- its CPU time (``/proc/PID/stat``, user + system) over ``--idle-seconds`` with nothing
  written;
- over ``--samples`` runs written one at a time, the time from the commit that finishes a
  run to its line on the command's stdout (median and max).

No root, no sandbox: the daemon's side is a writer in this process.
"""

from __future__ import annotations

import argparse
import itertools
import os
import select
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from observer.model import Run, Source
from observer.store import database

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SECOND = 1_000_000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def fill(path: Path, runs: int) -> None:
    conn = database.open_for_writing(path)
    now = time.time_ns() // 1000
    try:
        batch: list[Run] = []
        for n in range(runs):
            started = now - (runs - n) * 60 * SECOND
            running = n >= runs - 3
            batch.append(
                Run(
                    unit=f"unit-{n % 100:03d}.service", invocation_id=f"{n:032x}", host="bench",
                    source=Source.BUS, started_usec=started,
                    finished_usec=None if running else started + 2 * SECOND,
                    result=None if running else "success",
                    exit_code=None if running else "exited",
                    exit_status=None if running else 0,
                )
            )  # fmt: skip
            if len(batch) == 10_000:
                database.write_batch(conn, database.Batch(runs=batch))
                batch = []
        database.write_batch(conn, database.Batch(runs=batch))
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="observer-follow-") as workdir:
        db = Path(workdir, "observer.db")
        fill(db, args.runs)
        began = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "observer", "runs", "--follow", "--json", "--db", str(db)],
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        try:
            return measure(process, db, began, args)
        finally:
            process.terminate()
            process.wait()


def measure(
    process: subprocess.Popen[str], db: Path, began: float, args: argparse.Namespace
) -> int:
    assert process.stdout is not None
    conn = database.open_for_writing(db)
    try:
        # Runs until one is printed: a run recorded before the command's first look is part
        # of the past it does not print. The first line printed ends the start-up.
        for n in itertools.count(1000):
            write_finished(conn, n)
            if select.select([process.stdout], [], [], 0.5)[0]:
                break
        process.stdout.readline()
        startup = time.monotonic() - began
        before = cpu_seconds(process.pid)
        time.sleep(args.idle_seconds)
        idle = cpu_seconds(process.pid) - before
        lags = []
        for n in range(1, args.samples + 1):
            committed = write_finished(conn, n)
            process.stdout.readline()
            lags.append(time.monotonic() - committed)
            time.sleep(0.3)
    finally:
        conn.close()
    print(f"database: {args.runs:,} runs ({db.stat().st_size / 2**20:.0f} MiB)")
    print(f"start-up, to printing the first run: {startup:.2f} s")
    print(
        f"idle: {idle:.2f} CPU-s over {args.idle_seconds:.0f} s "
        f"({100 * idle / args.idle_seconds:.2f} % of a core; /proc ticks are {1 / CLOCK_TICKS} s)"
    )
    print(
        f"commit to printed line, {len(lags)} runs: "
        f"median {statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
    )
    return 0


def write_finished(conn: sqlite3.Connection, n: int) -> float:
    """Record one run that has just finished; return when it was committed."""
    now = time.time_ns() // 1000
    run = Run(
        unit="bench-new.service", invocation_id=f"{0xBE00_0000 + n:032x}", host="bench",
        source=Source.BUS, started_usec=now - SECOND, finished_usec=now, result="success",
        exit_code="exited", exit_status=0,
    )  # fmt: skip
    database.write_batch(conn, database.Batch(runs=[run]))
    return time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
