"""Benchmark: what the daemon's questions about a run cost it and PID 1, over D-Bus.

    sudo .venv/bin/python -m bench.bus_questions [--repeat 1000]

Boots a throw-away systemd (tests.sandbox), runs a service with a unit file once, then asks
systemd about that run ``--repeat`` times each way and prints the CPU per question of this
process (the asking side, dbus-fast and asyncio included) and of the sandbox's PID 1:

- a run's cost as the daemon asks it (``SystemdBus.run_cost``: the run's InvocationID, then
  each cost figure with a Get of its own, all sent at once), beside the way it was asked
  before (the InvocationID, then GetAll of the Service interface, 300 properties);
- a run's definition as the daemon asks it (``SystemdBus.definition_sources``: FragmentPath,
  DropInPaths and ExecStart sent at once), beside the three Gets one after another.

The daemon asks each once a run (the cost as it ends, the definition as it starts), so the
figures are per run. Needs root, like the integration tests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from bench.burst import cpu_seconds
from observer.recording.bus import PROPERTIES, SYSTEMD, SystemdBus, unit_path
from tests.sandbox import Sandbox, can_boot

UNIT = "probe.service"
ROUNDS = 3

Question = Callable[[], Awaitable[object]]


def questions(bus: SystemdBus, invocation_id: str) -> dict[str, Question]:
    """Each way of asking, by name: the daemon's own, and the one it replaced."""
    path = unit_path(UNIT)

    async def get(interface: str, name: str) -> object:
        body = [f"org.freedesktop.systemd1.{interface}", name]
        return await bus.call(SYSTEMD, path, PROPERTIES, "Get", "ss", body)

    async def cost_before() -> object:
        await get("Unit", "InvocationID")
        body = ["org.freedesktop.systemd1.Service"]
        return await bus.call(SYSTEMD, path, PROPERTIES, "GetAll", "s", body)

    async def definition_before() -> object:
        return [
            await get("Unit", "FragmentPath"),
            await get("Unit", "DropInPaths"),
            await get("Service", "ExecStart"),
        ]

    return {
        "cost: InvocationID, then GetAll Service (before)": cost_before,
        "cost: SystemdBus.run_cost (now)": lambda: bus.run_cost(UNIT, invocation_id, "bench"),
        "definition: three Gets in turn (before)": definition_before,
        "definition: SystemdBus.definition_sources (now)": lambda: bus.definition_sources(UNIT),
    }


async def measure(address: str, pid1: int, invocation_id: str, repeat: int) -> None:
    bus = SystemdBus(address, lambda event: None)
    await bus.connect()
    try:
        asked = questions(bus, invocation_id)
        if await asked["cost: SystemdBus.run_cost (now)"]() is None:
            print("note: systemd accounts nothing for this run here: the cost is null")
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in asked}
        for _ in range(ROUNDS):  # in turn, so that a change of the machine's speed hits all
            for name, question in asked.items():
                mine, theirs = time.thread_time(), cpu_seconds(pid1)
                for _ in range(repeat):
                    await question()
                figures[name].append(
                    ((time.thread_time() - mine) / repeat, (cpu_seconds(pid1) - theirs) / repeat)
                )
        for name, taken in figures.items():
            client = statistics.median(c for c, _ in taken) * 1e6
            pid_1 = statistics.median(p for _, p in taken) * 1e6
            print(f"  {name:50} asking {client:6.0f} us, PID 1 {pid_1:6.0f} us a question")
    finally:
        bus.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bus_questions", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeat", type=int, default=1000, help="questions of each kind a round")
    args = parser.parse_args(argv)
    if reason := can_boot():
        print(f"bench.bus_questions: {reason}", file=sys.stderr)
        return 2
    with Sandbox.boot() as sandbox:
        sandbox.write_unit(
            UNIT, "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
        )
        sandbox.daemon_reload()
        sandbox.start(UNIT)
        invocation_id = sandbox.unit_property(UNIT, "InvocationID")
        print(f"sandbox up (PID 1 is host pid {sandbox.pid}); {ROUNDS} rounds of "
              f"{args.repeat}, medians (CPU time; PID 1's in ticks of 10 ms):")  # fmt: skip
        asyncio.run(measure(sandbox.bus_address, sandbox.pid, invocation_id, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
