"""Benchmark: the static dashboard for a long history; prints figures (not a test).

    .venv/bin/python -m bench.dashboard [--units 200] [--runs 1000] [--keep DIR]

It fills a fresh database through database.write_batch, as the daemon writes it (``--units``
units with ``--runs`` runs each, one in seven failing, each with a few lines of output, the
failures with more), then times generating the pages as `observer report` does (into an
empty directory, again with nothing changed, and again after one more run of one unit, each
time without what the one before read, as a new process) and as the daemon does (a whole
``python -m observer.dashboard.rewrite`` process with the pages already on disk, then
again after one more run of one unit: wall and CPU time, and the process's peak RSS). It
prints the time of each, the number and size of the pages, and the largest page.
(`bench.history_scale` times whole `observer report` processes.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from observer.dashboard import pages
from observer.model import Run, Source
from observer.store import database

START_USEC = 1_700_000_000 * 1_000_000
HOUR_USEC = 3600 * 1_000_000


def invocation(unit: int, run: int) -> str:
    return f"{unit:08x}{run:024x}"


def fill(
    path: Path,
    units: int,
    runs: int,
    *,
    start_usec: int = START_USEC,
    interval_usec: int = HOUR_USEC,
    lines_ok: int = 4,
    lines_failed: int = 40,
) -> None:
    """Write ``units`` x ``runs`` runs with their output, one unit per transaction."""
    rng = random.Random(6)
    conn = database.open_for_writing(path)
    try:
        for u in range(units):
            name = f"job-{u:03d}.service" if u % 10 else f"backup@home-user{u}-My\\x20Files.service"
            typical = rng.uniform(0.05, 600.0)
            batch = database.Batch()
            for r in range(runs):
                failed = (u + r) % 7 == 0
                started = start_usec + r * interval_usec + u * 1_000_000
                duration = int(typical * rng.uniform(0.8, 1.5) * 1e6)
                iid = invocation(u, r)
                batch.runs.append(
                    Run(
                        unit=name, invocation_id=iid, host="bench", source=Source.BUS,
                        started_usec=started, finished_usec=started + duration,
                        result="exit-code" if failed else "success", exit_code="exited",
                        exit_status=1 if failed else 0, trigger=name.replace(".service", ".timer"),
                        restarts=0,
                    )
                )  # fmt: skip
                lines = lines_failed if failed else lines_ok
                for seq in range(lines):
                    message = f"step {seq} of run {r}: <b>done</b> \x1b[32mok\x1b[0m".encode()
                    batch.lines.append(database.StoredLine(iid, seq, started + seq, 6, message))
                batch.counts[iid] = database.OutputCounts(
                    iid, lines, lines * 40, 0, 0, None, started + lines
                )
            database.write_batch(conn, batch)
    finally:
        conn.close()


def timed(db: Path, out: Path) -> str:
    conn = database.open_for_reading(db)
    try:
        began = time.perf_counter()
        report = pages.generate(conn, out)
        seconds = time.perf_counter() - began
    finally:
        conn.close()
    return (
        f"{seconds:.2f}s, {report.written:,} pages written, {report.unchanged:,} unchanged, "
        f"{report.removed} removed"
    )


def rewrite(db: Path, out: Path) -> str:
    """One rewrite as the daemon starts it: a process of its own."""
    argv = [sys.executable, "-m", "observer.dashboard.rewrite", str(db), str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=True)
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    said = json.loads(done.stdout)
    return (
        f"{seconds:.2f}s (cpu {cpu:.2f}s), {said['written']:,} pages written, "
        f"{said['unchanged']:,} unchanged, {said['removed']} removed; "
        f"its process peaked at {said['peak_kib'] / 1024:.0f} MiB"
    )


def add_run(db: Path, runs: int) -> None:
    """One more run of one unit, after its ``runs`` runs."""
    conn = database.open_for_writing(db)
    try:
        started = START_USEC + runs * HOUR_USEC
        iid = invocation(1, runs)
        run = Run("job-001.service", iid, "bench", Source.BUS, started_usec=started,
                  finished_usec=started + 2_000_000, result="success", exit_code="exited",
                  exit_status=0)  # fmt: skip
        database.write_batch(conn, database.Batch(runs=[run]))
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1000, help="runs per unit")
    parser.add_argument("--keep", type=Path, help="write the database and pages here")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return bench(args.keep, args.units, args.runs)
    with tempfile.TemporaryDirectory(prefix="observer-bench-dashboard-") as workdir:
        return bench(Path(workdir), args.units, args.runs)


def bench(workdir: Path, units: int, runs: int) -> int:
    db, out = workdir / "observer.db", workdir / "pages"
    if db.exists():
        print(f"bench: {db} exists; pass an empty --keep directory", file=sys.stderr)
        return 1

    began = time.perf_counter()
    fill(db, units, runs)
    with sqlite3.connect(db) as conn:
        total_runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    filled = time.perf_counter() - began
    size = db.stat().st_size / 2**20
    print(
        f"database: {total_runs:,} runs of {units} units, {size:.0f} MiB, filled in {filled:.1f}s"
    )
    limits = pages.Limits()
    print(
        f"limits: {limits.history_runs} newest runs per unit with pages, "
        f"{limits.page_runs} per history page, {limits.sparkline_runs} in a sparkline"
    )

    print(f"observer report, empty directory: {timed(db, out)}")
    print(f"observer report again, nothing changed: {timed(db, out)}")
    add_run(db, runs)
    print(f"observer report after one more run of one unit: {timed(db, out)}")
    print(f"daemon, a rewrite with nothing changed: {rewrite(db, out)}")
    add_run(db, runs + 1)
    print(f"daemon, rewrite after one more run of one unit: {rewrite(db, out)}")

    files = [(entry.stat().st_size, entry.name) for entry in os.scandir(out)
             if entry.name.endswith(".html")]  # fmt: skip
    size, largest = max(files)
    print(f"pages: {len(files):,} files, {sum(s for s, _ in files) / 2**20:.0f} MiB in all; "
          f"overview {(out / pages.INDEX).stat().st_size / 1024:.0f} KiB; "
          f"largest {largest} {size / 1024:.0f} KiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
