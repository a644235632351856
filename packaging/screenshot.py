"""Takes docs/dashboard.md's screenshot of the dashboard, from a real run of the demo's timers.

    sudo .venv/bin/python packaging/screenshot.py [--seconds 60] [--output PNG]

Boots a throw-away systemd (as the demo does), installs the demo's units in it, runs the
real `observer daemon` with its dashboard on, lets the timers fire, then has headless
Chromium (the Debian package) take a picture of the overview the daemon wrote.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo import sample_jobs

# The sandbox is test support, not part of the installed package: take it from this clone.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.sandbox import can_boot

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long to let jobs run")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "screenshots" / "overview.png"
    )
    parser.add_argument("--size", default="1280,640", help="browser window: WIDTH,HEIGHT")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print(
            "screenshot: chromium is missing (packaging/dev-setup.sh installs it)", file=sys.stderr
        )
        return 1
    if (reason := can_boot()) is not None:
        print(f"screenshot: cannot boot a sandboxed systemd here: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="observer-screenshot-") as tmp:
        workdir = Path(tmp)
        pages = workdir / "pages"
        config = workdir / "observer.toml"
        config.write_text(
            f'[dashboard]\ndirectory = "{pages}"\nquiet_seconds = 1\nmin_interval_seconds = 1\n'
        )
        with sample_jobs(workdir, workdir / "observer.db", "--config", str(config)):
            print(f"screenshot: letting the timers fire for {args.seconds:.0f}s", flush=True)
            time.sleep(args.seconds)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}",
             f"--screenshot={args.output.resolve()}", f"--window-size={args.size}",
             (pages / "index.html").as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"screenshot: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
