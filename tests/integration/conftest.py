"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon
from tests.sandbox import Sandbox


@pytest.fixture
def observed(sandbox: Sandbox, tmp_path: Path) -> Iterator[ObserverDaemon]:
    """The real daemon recording a fresh sandbox, stopped after the test."""
    daemon = ObserverDaemon(sandbox, tmp_path)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()
