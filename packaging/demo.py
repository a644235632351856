"""A demo of observer against a throw-away systemd with a few sample timers.

Boots systemd 252 as PID 1 of its own namespaces (nothing reaches this machine's own
systemd), installs sample timers in it, runs the real `observer daemon` against it for a
while, then shows what the CLI answers. Run as root: `bash packaging/demo.sh`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# The sandbox is test support, not part of the installed package: take it from this clone.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.sandbox import Sandbox, can_boot

METRICS_URL = "http://127.0.0.1:9089/metrics"
UNITS = {
    "backup.service": """\
[Unit]
Description=Nightly backup (demo)
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "backing up /home"; sleep 0.4; echo "archive written: 42 MiB"'
""",
    "backup.timer": "[Timer]\nOnActiveSec=1\nOnUnitActiveSec=5\nAccuracySec=1ms\n",
    "cert-renew.service": """\
[Unit]
Description=Certificate renewal that fails every other time (demo)
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'if [ -e /run/renew-ok ]; then rm /run/renew-ok; \
echo "renewed example.org"; else touch /run/renew-ok; \
echo "error: rate limited by the CA" >&2; exit 1; fi'
""",
    "cert-renew.timer": "[Timer]\nOnActiveSec=2\nOnUnitActiveSec=4\nAccuracySec=1ms\n",
    "healthcheck.service": """\
[Service]
Type=oneshot
ExecStart=/bin/echo "all endpoints answered"
""",
    "healthcheck.timer": "[Timer]\nOnActiveSec=1\nOnUnitActiveSec=2\nAccuracySec=1ms\n",
    "worker.service": """\
[Unit]
Description=A long-running worker that crashes (demo)
StartLimitIntervalSec=0
[Service]
ExecStart=/bin/sh -c 'echo "worker up"; sleep 6; echo "worker: out of memory" >&2; exit 137'
Restart=on-failure
RestartSec=1
""",
}


def observer(*args: str, db: Path) -> None:
    """Run the real CLI and show what a person would see."""
    print(f"\n$ observer {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "observer", *args, "--db", str(db)], check=False)


TIMERS = ("backup.timer", "cert-renew.timer", "healthcheck.timer")


@contextlib.contextmanager
def sample_jobs(workdir: Path, db: Path, *daemon_args: str) -> Iterator[Sandbox]:
    """A throw-away systemd running the sample jobs, the real daemon recording them."""
    with Sandbox.boot() as sandbox, (workdir / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "observer", "daemon", "--db", str(db), *daemon_args,
             "--bus-address", sandbox.bus_address, "--journal-dir", str(sandbox.journal_dir),
             "--journal-socket", str(sandbox.root / "run/systemd/journal/socket")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for name, text in UNITS.items():
                sandbox.write_unit(name, text)
            sandbox.daemon_reload()
            sandbox.systemctl("start", *TIMERS)
            sandbox.start("worker.service", wait=False)
            yield sandbox
            sandbox.systemctl("stop", *TIMERS, "worker.service", check=False)
            time.sleep(1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def show_metrics() -> None:
    """A few of the series the daemon serves to Prometheus."""
    print(f"\n$ curl -s {METRICS_URL} | grep backup", flush=True)
    try:
        with urllib.request.urlopen(METRICS_URL, timeout=5) as response:
            text = response.read().decode()
    except OSError as e:
        print(f"(metrics not served: {e})")
        return
    wanted = ("observer_last_run_success", "observer_runs_total", "observer_last_run_duration")
    for line in text.splitlines():
        if "backup.service" in line and line.startswith(wanted):
            print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="how long to let jobs run")
    parser.add_argument("--db", type=Path, help="keep the database here (default: a temp dir)")
    args = parser.parse_args()
    if (reason := can_boot()) is not None:
        print(f"demo: cannot boot a sandboxed systemd here: {reason}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="observer-demo-"))
    db = args.db or workdir / "observer.db"
    print("demo: booting a throw-away systemd 252 in its own namespaces ...", flush=True)
    with sample_jobs(workdir, db):
        print(
            f"demo: observer daemon recording (log: {workdir / 'daemon.log'});"
            f" letting the timers fire for {args.seconds:.0f}s ...",
            flush=True,
        )
        time.sleep(args.seconds)
        observer("status", db=db)
        show_metrics()
    observer("history", "backup", "-n", "5", db=db)
    observer("last-failure", "cert-renew", db=db)
    observer("stats", "worker", db=db)
    observer("report", "--output", str(workdir / "dashboard"), db=db)
    print(f"\ndemo: the dashboard is at {workdir / 'dashboard' / 'index.html'}")
    print(f"demo: the database stays at {db}; read it with `observer ... --db {db}`")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
