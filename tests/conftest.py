"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.sandbox import Sandbox, can_boot, default_root, stray_state

# A suite a non-interactive shell starts in the background (packaging/test.sh runs two at
# once) inherits SIGINT ignored, and so does every process it starts: a command then never
# sees the tests' Ctrl-C (`runs --follow` ran on until killed). Python's own handler here
# is reset to the default in each process started, which then installs its own.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def sandbox_or_skip() -> None:
    """Skip the test when no sandbox can be booted here; on CI, fail it instead."""
    if (reason := can_boot()) is None:
        if (stray := stray_state(default_root())) is not None:
            pytest.fail(stray)  # a fault of this machine, not a reason to skip
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to boot a systemd sandbox: {reason}")
    pytest.skip(reason)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A freshly booted systemd sandbox, torn down after the test whatever its outcome."""
    sandbox_or_skip()
    with Sandbox.boot(timeout=30) as booted:
        yield booted
