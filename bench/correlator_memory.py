"""Benchmark: the correlator's cost per run as its memory of invocations fills.

    .venv/bin/python -m bench.correlator_memory [--repeat 5]

No sandbox: a Correlator is fed, as the daemon feeds it, each run's timer firing (its
LastTriggerUSec), its JobNew, its journal "Starting" record (with its JOB_ID) and the
job's details (JobDetails, as the bus answers),
for 50 units, and as many starts of 50 other timers skipped on a condition, after it
already remembers 100, 1,000 or 4,096 (all it keeps) of each.
It prints the CPU time per run at each size and how the full memory compares with 100
remembered: a daemon that has run for days keeps a full memory, so a cost that grows with
it is paid by every run of a long-lived server. Then the same for a user's line journald
could tag only with the uid, looked for among 100, 1,000 or 4,096 units' starts. Target:
flat (the full memory within 1.5x).
"""

from __future__ import annotations

import argparse
import statistics
import time

from observer.recording import correlator as correlator_module
from observer.recording import starts as starts_module
from observer.recording.correlator import Correlator
from observer.recording.events import JobDetails, JobKind, JobNew, Pid1Record, UnitProperties

T0 = 1_790_000_000_000_000
UNITS = 50
MEASURED = 2000
TARGET_RATIO = 1.5


def one_run(correlator: Correlator, n: int) -> None:
    """A timer's run, and another timer's start skipped on its condition."""
    unit, skipped = f"job-{n % UNITS:02d}.service", f"skip-{n % UNITS:02d}.service"
    for fired in (unit, skipped):  # each timer's signal comes before its run is known
        timer = fired.replace(".service", ".timer")
        correlator.feed(UnitProperties(timer, "Timer", {"LastTriggerUSec": T0 + n}))
    correlator.feed(JobNew(2 * n, unit))
    correlator.feed(Pid1Record(JobKind.STARTING, unit, f"{n:032x}", T0 + n, job_id=2 * n))
    correlator.feed(JobDetails(2 * n, unit, "start", f"job-{n % UNITS:02d}.timer"))
    correlator.feed(Pid1Record(JobKind.CONDITION_UNMET, skipped, "", T0 + n, job_id=2 * n + 1))
    correlator.feed(JobDetails(2 * n + 1, skipped, "start", f"skip-{n % UNITS:02d}.timer"))


def usec_per_run(remembered: int) -> float:
    """CPU microseconds per run and skipped start fed after ``remembered`` of each."""
    correlator = Correlator("bench")
    for n in range(remembered):
        one_run(correlator, n)
    began = time.thread_time()
    for n in range(remembered, remembered + MEASURED):
        one_run(correlator, n)
    return (time.thread_time() - began) / MEASURED * 1e6


def usec_per_user_line(units: int) -> float:
    """CPU microseconds to find the run of a user's line journald tagged only with the
    uid (its process had exited), among ``units`` units' starts (each their newest 8)."""
    correlator = Correlator("bench")
    for n in range(units * 8):
        unit = f"alice/sync-{n // 10 % 5}.service" if n % 10 == 0 else f"run-{n % units}.service"
        correlator.starts.note(unit, f"{n:032x}", T0 + n)
    began = time.thread_time()
    for n in range(MEASURED):
        found = correlator.user_run_at("alice/", T0 + units * 8 + n)
        assert found is not None, "the user has runs"
    return (time.thread_time() - began) / MEASURED * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.correlator_memory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeat", type=int, default=5, help="median of this many (5)")
    args = parser.parse_args(argv)
    sizes = (100, 1000, correlator_module._MEMORY)
    figures = {
        size: statistics.median(usec_per_run(size) for _ in range(args.repeat)) for size in sizes
    }
    for size, usec in figures.items():
        print(f"{size:>6,} runs and skipped starts remembered: {usec:7.1f} us of CPU per pair")
    ratio = figures[sizes[-1]] / figures[sizes[0]]
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"full memory / 100 remembered: {ratio:.2f}x, target <= {TARGET_RATIO}x: {met}")
    lines = {
        units: statistics.median(usec_per_user_line(units) for _ in range(args.repeat))
        for units in (100, 1000, starts_module._UNITS)
    }
    for units, usec in lines.items():
        print(
            f"{units:>6,} units' starts remembered: {usec:7.1f} us of CPU per user's uid-only line"
        )
    ratio = lines[starts_module._UNITS] / lines[100]
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"full memory / 100 units: {ratio:.2f}x, target <= {TARGET_RATIO}x: {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
