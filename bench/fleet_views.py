"""Benchmark: what the fleet views cost on a central database of 50 hosts.

    .venv/bin/python -m bench.fleet_views [--sizes 10000,100000,1000000] [--hosts 50]
                                          [--units 20] [--keep DIR]

For each size it fills a fresh database with that many runs over ``--hosts`` hosts and
``--units`` units (every unit on every host, a run every 10 minutes up to now, one in
seven failing; rows inserted in bulk, then the summaries rebuilt as the migration does),
then prints the time (median of 5, in this process) of `observer fleet`'s reading, `status`,
`status --host`, `history UNIT --host`, `last-failure UNIT --host`, `runs -n 20 --host`, and
the whole `observer fleet` and `observer status` processes (median of 3). Needs no root.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from observer.fleet import facts, views
from observer.reading import history
from observer.store import database, hosts, schema, summary

INTERVAL_USEC = 600 * 1_000_000


def fill(db: Path, runs: int, host_count: int, unit_count: int) -> None:
    """``runs`` finished runs, spread evenly over every (host, unit), the newest now."""
    conn = sqlite3.connect(db)
    conn.executescript(schema.SCHEMA)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
    now = time.time_ns() // 1000
    keys = [(f"web{h:02d}", f"job-{u:02d}.service") for h in range(host_count)
            for u in range(unit_count)]  # fmt: skip
    per_key = runs // len(keys)
    rows = []
    for k, (host, unit) in enumerate(keys):
        for n in range(per_key):
            started = now - (per_key - n) * INTERVAL_USEC - k * 1000
            failed = (n + k) % 7 == 0
            rows.append((unit, f"{k:06x}{n:026x}", host, "journal", started, started + 2_000_000,
                         "exit-code" if failed else "success", "exited", int(failed)))  # fmt: skip
    with conn:
        conn.executemany(
            "INSERT INTO runs (unit, invocation_id, host, source, started_usec, finished_usec, "
            "result, exit_code, exit_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        summary.rebuild(conn)
    conn.close()


def timed(call: Callable[[], object], repeat: int = 5) -> float:
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def process_time(db: Path, *argv: str) -> float:
    took = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "observer", *argv, "--db", str(db)],
                       check=True, capture_output=True)  # fmt: skip
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def measure(conn: sqlite3.Connection) -> dict[str, float]:
    """Seconds each reading takes (median of 5)."""
    one = hosts.matcher("web07")
    unit = "job-03.service"
    figures: dict[str, Callable[[], object]] = {
        "fleet (read + judge)": lambda: views.across_hosts(
            facts.host_units(conn), time.time_ns() // 1000
        ),
        "status": lambda: history.unit_status(conn),
        "status --host web07": lambda: history.unit_status(conn, one),
        "history UNIT --host web07": lambda: history.unit_history(conn, unit, 20, one),
        "last-failure UNIT --host web07": lambda: history.last_failure(conn, unit, one),
        "runs -n 20 --host web07": lambda: history.recent_runs(conn, limit=20, on=one),
    }
    return {name: timed(call) for name, call in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--keep", type=Path, metavar="DIR")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="observer-fleet-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{args.hosts} hosts x {args.units} units; milliseconds (median)")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            db = workdir / f"fleet-{size}.db"
            db.unlink(missing_ok=True)
            began = time.perf_counter()
            fill(db, size, args.hosts, args.units)
            print(f"\n{size:,} runs (filled in {time.perf_counter() - began:.1f}s, "
                  f"{db.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
            with closing(database.open_for_reading(db)) as conn:
                for name, took in measure(conn).items():
                    print(f"  {name:<34} {took * 1000:8.1f}")
            for argv in (("fleet",), ("status",)):
                name = f"observer {' '.join(argv)} (process)"
                print(f"  {name:<34} {process_time(db, *argv) * 1000:8.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
