"""ruff and mypy (strict) are part of the test suite, and so is the size of modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing() -> None:
    result = run_tool("ruff", "check", "observer", "tests", "bench", "packaging")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_stays_under_500_lines() -> None:
    """Modules are named after what they own and kept small (the house rule)."""
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "observer").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) >= 500
    }
    assert too_long == {}
