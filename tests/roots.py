"""Roots of other Debian releases for the sandbox (built and cached by tests/roots.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.sandbox import can_boot

SCRIPT = Path(__file__).with_name("roots.sh")
# Suite -> the systemd it ships (December 2026).
SUITES = {"bookworm": 252, "bookworm-backports": 254, "trixie": 257, "sid": 262}
# How long building one from nothing may take (debootstrap and pip over the network).
BUILD_TIMEOUT = 900


def build(suite: str) -> Path:
    """The root of ``suite``, built on first use; raises RuntimeError with the reason."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (packaging/dev-setup.sh installs it)")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), suite],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tests/roots.sh {suite} failed: {result.stderr.strip()[-2000:]}")
    if (took := time.monotonic() - started) > 5:
        print(f"root {suite}: ready in {took:.0f} s")
    return Path(result.stdout.strip().splitlines()[-1])


def root_or_skip(suite: str) -> Path:
    """The root of ``suite``; skips the test with the reason when none can be had (fails on CI)."""
    reason = can_boot()
    if reason is None:
        try:
            return build(suite)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            reason = str(error)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to boot a {suite} root: {reason}")
    pytest.skip(reason)
