"""Benchmark: /metrics with 100,000 transient units, folded (the default) and not.

    .venv/bin/python -m bench.metrics_fold [--units 100000] [--admin-units 100] [--keep DIR]

Fills a fresh database through database.write_batch (no sandbox: one finished run of each
of ``--units`` units named as systemd-run names them, ``run-r<32 hex digits>.service``, and
of ``--admin-units`` named ones, one run in seven failing), then builds the run metrics as
the daemon's worker thread does (read the units' states, count every run, read the alert
tables, render the text) with the default ``[metrics] fold`` and with ``fold = []``, and
prints for each the time of that reading, the lines and bytes of /metrics, and the unit
labels in it. A scrape sends the bytes rendered then, so its cost follows their size.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from contextlib import closing
from pathlib import Path

from observer.config import SYSTEMD_RUN_FOLD
from observer.metrics.collectors import RunCollector, render
from observer.metrics.snapshot import RunTally, Snapshot, UnitFold, alert_counts, read_unit_states
from observer.model import Run, Source
from observer.store import database

SECOND = 1_000_000
CHUNK = 5000


def run_of(n: int, unit: str, now_usec: int) -> Run:
    started = now_usec - (n + 1) * SECOND
    failed = n % 7 == 0
    return Run(
        unit=unit,
        invocation_id=f"{n:032x}",
        host="bench",
        source=Source.BUS,
        started_usec=started,
        finished_usec=started + SECOND // 2,
        result="exit-code" if failed else "success",
        exit_code="exited",
        exit_status=1 if failed else 0,
    )


def fill(db: Path, units: int, admin_units: int) -> float:
    """Write the runs; return how long it took."""
    now = time.time_ns() // 1000
    names = [f"run-r{n:032x}.service" for n in range(units)]
    names += [f"job-{n:03d}.service" for n in range(admin_units)]
    began = time.perf_counter()
    conn = database.open_for_writing(db)
    try:
        for first in range(0, len(names), CHUNK):
            runs = [run_of(n, names[n], now) for n in range(first, min(first + CHUNK, len(names)))]
            database.write_batch(conn, database.Batch(runs=runs))
    finally:
        conn.close()
    return time.perf_counter() - began


def exposition(db: Path, fold: UnitFold) -> tuple[float, bytes, int]:
    """The run metrics as the daemon's worker builds them: (seconds, text, units shown)."""
    began = time.perf_counter()
    with closing(database.open_for_reading(db)) as conn:
        tally = RunTally(fold)
        tally.update(conn, [])
        units, timers = read_unit_states(conn, {}, "bench", fold)
        snap = Snapshot(
            "bench", tuple(units), tuple(timers), tally.runs_by_result, tally.durations(),
            alert_counts(conn, fold),
        )  # fmt: skip
        text = render(RunCollector(snap).collect())
    return time.perf_counter() - began, text, len(units)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--admin-units", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="keep the database in this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="observer-bench-fold-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "observer.db"
    try:
        took = fill(db, args.units, args.admin_units)
        print(f"filled {args.units:,} transient + {args.admin_units} named units in {took:.1f} s")
        print("fold     | reading | units shown | lines | bytes | gzip bytes")
        for name, fold in (("default", UnitFold(SYSTEMD_RUN_FOLD)), ("[]", UnitFold())):
            seconds, text, shown = exposition(db, fold)
            lines = text.count(b"\n")
            print(
                f"{name:8} | {seconds:6.2f} s | {shown:11,} | {lines:,} | {len(text):,} | "
                f"{len(gzip.compress(text, compresslevel=6)):,}"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
