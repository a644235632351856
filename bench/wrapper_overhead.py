"""What `observer run` costs a job: start-up (`true`) and a job printing 100 MB.

Run with ``python -m bench.wrapper_overhead [--runs N] [--megabytes M]``. It prints figures;
it asserts nothing. Each job's output goes through a pipe to ``cat > /dev/null``, as cron
reads a job's output through a pipe; the database is a fresh file in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OBSERVER = Path(sys.executable).parent / "observer"
# What `observer run -- true` may cost beyond `true` (issue 25).
OVERHEAD_TARGET = 0.030
# Modules `observer run` must not pay for.
HEAVY = ("asyncio", "dbus_fast", "systemd", "cronsim")


def timed(command: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(["sh", "-c", command], env=env, check=True)
    return time.perf_counter() - start


def median_of(command: str, env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(command, env) for _ in range(runs))


def imported_modules(env: dict[str, str]) -> list[tuple[str, int]]:
    """Modules `observer run -- true` imports, with their cumulative import time (us)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "observer", "run", "--name", "imports",
         "--", "true"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    modules = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            # Nested imports are indented: keep their indentation to tell them apart.
            modules.append((name[1:].rstrip(), int(cumulative)))
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="runs of `true` (median)")
    parser.add_argument("--megabytes", type=int, default=100, help="output of the big job")
    parser.add_argument("--big-runs", type=int, default=3, help="runs of the big job (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="observer-bench-") as work:
        env = {
            "PATH": "/usr/bin:/bin",
            "OBSERVER_DB": os.path.join(work, "observer.db"),
            "OBSERVER_SPOOL": os.path.join(work, "spool"),
        }
        wrap = f"{shlex.quote(str(OBSERVER))} run --name bench --"
        timed(f"{wrap} true", env)  # create the database first

        bare = median_of("true", env, args.runs)
        wrapped = median_of(f"{wrap} true", env, args.runs)
        version = median_of(f"{shlex.quote(str(OBSERVER))} --version > /dev/null", env, args.runs)
        print(f"start-up, median of {args.runs} runs:")
        print(f"  true                          {bare * 1000:8.1f} ms")
        print(f"  observer --version            {version * 1000:8.1f} ms  (Python and imports)")
        print(f"  observer run -- true          {wrapped * 1000:8.1f} ms")
        overhead = wrapped - bare
        verdict = "met" if overhead <= OVERHEAD_TARGET else "NOT met"
        print(f"  overhead of observer run      {overhead * 1000:8.1f} ms per run (target "
              f"{OVERHEAD_TARGET * 1000:.0f} ms: {verdict})")  # fmt: skip

        modules = imported_modules(env)
        names = {name.strip().split(".")[0] for name, _ in modules}
        total = sum(us for name, us in modules if not name.startswith(" "))
        own = sum(us for name, us in modules if name == "observer.run.cli")
        print(f"  imports: {len(modules)} modules, {total / 1000:.1f} ms (python -X importtime)")
        print(f"    of which observer.run.cli and what only it imports: {own / 1000:.1f} ms")
        print(f"  heavy modules imported: {sorted(names & set(HEAVY)) or 'none'}")

        size = args.megabytes * 1024 * 1024
        line = "x" * 99
        job = f"yes {line} | head -c {size}"
        bare_big = median_of(f"{job} | cat > /dev/null", env, args.big_runs)
        wrapped_big = median_of(
            f"{wrap} sh -c {shlex.quote(job)} | cat > /dev/null", env, args.big_runs
        )
        megabytes = size / 1e6
        print(f"{args.megabytes} MiB of output in lines of 100 bytes, median of {args.big_runs}:")
        print(
            f"  the job alone                 {bare_big:8.2f} s  {megabytes / bare_big:8.0f} MB/s"
        )
        print(
            f"  through observer run          {wrapped_big:8.2f} s  "
            f"{megabytes / wrapped_big:8.0f} MB/s"
        )
        print(f"  overhead                      {wrapped_big - bare_big:8.2f} s")
        db_size = Path(env["OBSERVER_DB"]).stat().st_size
        print(f"  database after all runs       {db_size / 1024:8.0f} KiB (output is capped)")


if __name__ == "__main__":
    main()
