"""packaging/install.sh and observer.service, checked without installing anything
(tests/integration/test_install.py installs them into a sandboxed systemd)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "packaging" / "install.sh"
UNIT = ROOT / "packaging" / "observer.service"


def install_sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_shellcheck_finds_nothing_in_the_install_script() -> None:
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is missing (packaging/dev-setup.sh installs it)")
        pytest.skip("shellcheck is not installed")
    result = subprocess.run(
        ["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout


def test_the_install_script_explains_itself_and_refuses_what_it_does_not_know() -> None:
    shown = install_sh("--help")
    assert shown.returncode == 0
    assert "--uninstall --purge" in shown.stdout
    unknown = install_sh("--upgrade")
    assert unknown.returncode == 2
    assert "unknown option --upgrade" in unknown.stderr
    lone_purge = install_sh("--purge")
    assert lone_purge.returncode == 1
    assert "--purge goes with --uninstall" in lone_purge.stderr


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_runs_the_installed_daemon_on_the_installed_database() -> None:
    settings = unit_settings()
    script = SCRIPT.read_text()
    venv = re.search(r"^readonly VENV=\$PREFIX/(\S+)", script, re.MULTILINE)
    prefix = re.search(r"^readonly PREFIX=(\S+)", script, re.MULTILINE)
    assert venv is not None
    assert prefix is not None
    assert settings["ExecStart"] == [
        f"{prefix[1]}/{venv[1]}/bin/observer daemon --db /var/lib/observer/observer.db"
    ]
    assert settings["Type"] == ["notify"]
    assert settings["User"] == settings["Group"] == ["observer"]
    assert settings["StateDirectory"][0].split()[0] == "observer"
