"""What `observer run` costs a job: start-up (`true`) and a job printing 100 MB.

Run with ``python -m bench.wrapper_overhead [--runs N] [--megabytes M]`` using the Python of
the installation to time: it times the ``observer`` script beside ``sys.executable`` (a
pip-installed one, its modules compiled), never the source tree it is started from. It
prints figures; it asserts nothing. Each job's output goes through a pipe to
``cat > /dev/null``, as cron reads a job's output through a pipe; the database is a fresh
file in a temporary directory, and no daemon holds it open (so each run's last connection
checkpoints the WAL into it when it closes; a second figure has a connection of the benchmark
hold it open, as the daemon does). Times are medians of wall time and of CPU time
(user + system of the command and its children); on a busy machine the CPU time is the
steadier figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import sqlite3
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
# The configuration an installed host has (every line commented out, the sections there).
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "packaging" / "observer.toml"


def timed(command: str, env: dict[str, str]) -> tuple[float, float]:
    """The wall time and the CPU time (user + system, children included) of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["sh", "-c", command], env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def medians(
    commands: dict[str, str], env: dict[str, str], runs: int
) -> dict[str, tuple[float, float]]:
    """Each command's median wall and CPU time, the commands run in turn ``runs`` times (so
    that a busy moment of the machine falls on all of them alike)."""
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            times[label].append(timed(command, env))
    return {
        label: (statistics.median(w for w, _ in each), statistics.median(c for _, c in each))
        for label, each in times.items()
    }


def imported_modules(env: dict[str, str]) -> list[tuple[str, int]]:
    """Modules `observer run -- true` imports, with their cumulative import time (us)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(OBSERVER), "run", "--name", "imports",
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
        observer = shlex.quote(str(OBSERVER))
        wrap = f"{observer} run --name bench --"
        config = shlex.quote(str(SHIPPED_CONFIG))
        timed(f"{wrap} true", env)  # create the database first

        commands = {
            "true": "true",
            "python -c pass": f"{shlex.quote(sys.executable)} -c pass",
            "observer --version": f"{observer} --version > /dev/null",
            "observer run -- true": f"{wrap} true",
        }
        if SHIPPED_CONFIG.exists():
            commands["  with the shipped config"] = f"{observer} run --config {config} " + (
                "--name bench -- true"
            )
        times = medians(commands, env, args.runs)
        # As when the daemon runs: another connection keeps the WAL open, so the run's own
        # connection does not checkpoint it into the database file (and sync it) on closing.
        held = sqlite3.connect(env["OBSERVER_DB"])
        held.execute("SELECT COUNT(*) FROM runs").fetchone()
        times["  with the database held open"] = medians({"": f"{wrap} true"}, env, args.runs)[""]
        held.close()
        print(f"start-up, median of {args.runs} runs:       wall        CPU")
        for label, (wall, cpu) in times.items():
            print(f"  {label:28s} {wall * 1000:8.1f} ms {cpu * 1000:8.1f} ms")
        bare_wall, bare_cpu = times["true"]
        wall, cpu = times["observer run -- true"]
        verdict = "met" if wall - bare_wall <= OVERHEAD_TARGET else "NOT met"
        print(f"  overhead of observer run     {(wall - bare_wall) * 1000:8.1f} ms "
              f"{(cpu - bare_cpu) * 1000:8.1f} ms per run (target "
              f"{OVERHEAD_TARGET * 1000:.0f} ms: {verdict})")  # fmt: skip

        modules = imported_modules(env)
        names = {name.strip().split(".")[0] for name, _ in modules}
        total = sum(us for name, us in modules if not name.startswith(" "))
        own = sum(us for name, us in modules if not name.startswith(" ") and "observer" in name)
        print(f"  imports: {len(modules)} modules, {total / 1000:.1f} ms (python -X importtime)")
        print(f"    of which observer's modules and what they import first: {own / 1000:.1f} ms")
        print(f"  heavy modules imported: {sorted(names & set(HEAVY)) or 'none'}")

        size = args.megabytes * 1024 * 1024
        line = "x" * 99
        job = f"yes {line} | head -c {size}"
        big = medians(
            {
                "bare": f"{job} | cat > /dev/null",
                "wrapped": f"{wrap} sh -c {shlex.quote(job)} | cat > /dev/null",
            },
            env,
            args.big_runs,
        )
        bare_big, wrapped_big = big["bare"][0], big["wrapped"][0]
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
