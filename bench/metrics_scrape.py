"""Benchmark: scraping observer's /metrics with 1,000 observed units, next to node_exporter's
systemd collector scraping the same sandbox in the same run; prints figures.

    sudo .venv/bin/python -m bench.metrics_scrape [--units 1000] [--scrapes 30]

It boots a throw-away systemd (tests.sandbox) with ``--units`` oneshot services, each with
a daily timer, runs every service once (every 7th fails), starts `observer daemon` on it,
waits until all runs are recorded, then scrapes, one after the other, ``--scrapes`` times:

- observer's /metrics (which reads only what the daemon holds in memory);
- node_exporter's systemd collector (``--collector.disable-defaults --collector.systemd``),
  pointed at the sandbox's bus with DBUS_SYSTEM_BUS_ADDRESS (node_exporter first tries
  /run/systemd/private, which this host does not have, then the system bus address);
- the same with ``--collector.systemd.enable-restarts-metrics`` and
  ``--collector.systemd.enable-start-time-metrics`` (closer to what observer reports).

For each: wall time per scrape (median, p95, max), the size sent (gzip, which Prometheus
asks for) and the sample count, the exporter's CPU time per scrape, and the CPU time the
sandbox (its systemd, dbus-daemon, journald: everything in its cgroup) spent during the
scrapes. Needs root, like the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.sandbox import Sandbox, can_boot
from tests.waiting import NotInTime, wait_for

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not be set up or run."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cgroup_cpu_seconds(cgroup: Path) -> float:
    """CPU time of everything in a cgroup (v2) so far."""
    for line in (cgroup / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise BenchError(f"{cgroup}/cpu.stat has no usage_usec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> bytes:
    """The body as sent, gzip-compressed when the exporter does that, as Prometheus asks."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return bytes(response.read())


def text_of(body: bytes) -> bytes:
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


@contextlib.contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run a child (stopped by the kernel if we die), yield its pid, stop it afterwards."""
    with log.open("wb") as out:
        child = subprocess.Popen(
            ["setpriv", "--pdeathsig", "TERM", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
        )  # fmt: skip
    try:
        yield child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@dataclass(frozen=True, slots=True)
class Figures:
    """What scraping one exporter cost."""

    name: str
    seconds: list[float]
    size: int
    samples: int
    exporter_cpu: float
    sandbox_cpu: float

    def row(self) -> str:
        ordered = sorted(self.seconds)
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
        n = len(self.seconds)
        return (
            f"{self.name:<44} {statistics.median(ordered) * 1e3:9.1f} {p95 * 1e3:9.1f} "
            f"{ordered[-1] * 1e3:9.1f} {self.size / 1024:8.0f} {self.samples:8d} "
            f"{self.exporter_cpu / n * 1e3:10.1f} {self.sandbox_cpu / n * 1e3:10.1f}"
        )


HEADER = (
    f"{'exporter':<44} {'median ms':>9} {'p95 ms':>9} {'max ms':>9} {'gz KiB':>8} "
    f"{'samples':>8} {'cpu ms/scr':>10} {'sbx ms/scr':>10}"
)


def measure(name: str, url: str, pid: int, sandbox: Sandbox, scrapes: int) -> Figures:
    """Scrape ``url`` once to warm up, then ``scrapes`` times, one after the other."""
    body = fetch(url)
    seconds = []
    cpu_before, sandbox_before = cpu_seconds(pid), cgroup_cpu_seconds(sandbox.cgroup)
    for _ in range(scrapes):
        began = time.perf_counter()
        body = fetch(url)
        seconds.append(time.perf_counter() - began)
    exporter_cpu = cpu_seconds(pid) - cpu_before
    sandbox_cpu = cgroup_cpu_seconds(sandbox.cgroup) - sandbox_before
    lines = text_of(body).splitlines()
    samples = sum(1 for line in lines if line and not line.startswith(b"#"))
    return Figures(name, seconds, len(body), samples, exporter_cpu, sandbox_cpu)


def prepare_units(sandbox: Sandbox, units: int) -> None:
    """Write the services and their timers, and run every service once."""
    width = len(str(units - 1))
    unit_dir = sandbox.root / "etc/systemd/system"
    names = []
    for n in range(units):
        name = f"job-{n:0{width}d}"
        status = 3 if n % 7 == 0 else 0
        (unit_dir / f"{name}.service").write_text(
            f"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit {status}'\n"
        )
        (unit_dir / f"{name}.timer").write_text("[Timer]\nOnCalendar=daily\n")
        names.append(name)
    sandbox.daemon_reload()
    for chunk in range(0, units, 200):
        batch = names[chunk : chunk + 200]
        sandbox.systemctl("start", "--no-block", *(f"{n}.timer" for n in batch))
        sandbox.systemctl("start", "--no-block", *(f"{n}.service" for n in batch), check=False)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if node_exporter is None:
        raise BenchError("node_exporter is missing: apt-get install prometheus-node-exporter")
    print(f"booting a sandbox with {args.units} services and timers ...", flush=True)
    with Sandbox.boot(timeout=60) as sandbox:
        port = free_port()
        config = workdir / "observer.toml"
        config.write_text(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        daemon_argv = [
            sys.executable, "-m", "observer", "daemon",
            "--db", str(workdir / "observer.db"), "--config", str(config),
            "--bus-address", sandbox.bus_address, "--journal-dir", str(sandbox.journal_dir),
            "--journal-socket", str(sandbox.root / "run/systemd/journal/socket"),
        ]  # fmt: skip
        with process(daemon_argv, workdir / "daemon.log") as daemon:
            url = f"http://127.0.0.1:{port}/metrics"
            wait_for(lambda: "observer daemon ready" in (workdir / "daemon.log").read_text(),
                     timeout=60, what="the daemon to be ready", every=0.5)  # fmt: skip
            began = time.monotonic()
            prepare_units(sandbox, args.units)

            def all_recorded() -> bool:
                text = text_of(fetch(url)).decode()
                counted = re.findall(r'^observer_runs_total\{[^}]*unit="job-', text, re.M)
                return len(counted) >= int(args.units)

            wait_for(
                all_recorded, timeout=600, what=f"observer to record {args.units} runs", every=0.5
            )
            print(f"all runs recorded after {time.monotonic() - began:.1f} s", flush=True)
            time.sleep(2)
            text = text_of(fetch(url)).decode()
            refresh = re.search(
                r"^observer_metrics_refresh_duration_seconds\{[^}]*\} (\S+)", text, re.M
            )
            results = [measure("observer /metrics", url, daemon, sandbox, args.scrapes)]
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=sandbox.bus_address)
            for name, extra in (
                ("node_exporter --collector.systemd", []),
                ("node_exporter systemd + restarts + start time", [
                    "--collector.systemd.enable-restarts-metrics",
                    "--collector.systemd.enable-start-time-metrics",
                ]),
            ):  # fmt: skip
                node_port = free_port()
                argv = [
                    node_exporter, "--collector.disable-defaults", "--collector.systemd",
                    f"--web.listen-address=127.0.0.1:{node_port}", *extra,
                ]  # fmt: skip
                log = workdir / f"node_exporter-{node_port}.log"
                with process(argv, log, env) as node:
                    node_url = f"http://127.0.0.1:{node_port}/metrics"
                    wait_for(functools.partial(_answers, node_url), timeout=30,
                             what="node_exporter to answer", every=0.5)  # fmt: skip
                    body = text_of(fetch(node_url)).decode()
                    if "node_systemd_unit_state" not in body:
                        raise BenchError(f"node_exporter did not read systemd:\n{log.read_text()}")
                    results.append(measure(name, node_url, node, sandbox, args.scrapes))
    print()
    print(f"{args.units} services with timers, {args.scrapes} scrapes each, one after the other")
    if refresh is not None:
        took = float(refresh[1]) * 1e3
        print(f"observer's last reading of the store for its snapshot took {took:.0f} ms")
    print(HEADER)
    for figures in results:
        print(figures.row())
    print("cpu ms/scr: the exporter's CPU time per scrape; sbx ms/scr: CPU time the sandbox's")
    print("systemd, dbus-daemon and journald spent per scrape (answering the exporter's calls)")
    return 0


def _answers(url: str) -> bool:
    try:
        fetch(url)
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_scrape", description=__doc__)
    parser.add_argument("--units", type=int, default=1000, help="services (each with a timer)")
    parser.add_argument("--scrapes", type=int, default=30, help="scrapes of each exporter")
    args = parser.parse_args(argv)
    if reason := can_boot():
        print(f"metrics_scrape: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="observer-bench-") as workdir:
        try:
            return benchmark(args, Path(workdir))
        except (BenchError, NotInTime) as e:
            print(f"metrics_scrape: {e}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
