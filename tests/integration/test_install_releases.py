"""packaging/install.sh and a pipx install of the wheel, on Debian 12 and 13.

Each test boots a sandbox from a release's root (tests/roots.sh) and removes the observer
that tests/roots.sh put in /opt/observer (in the sandbox's throw-away layer), so that the
server starts without it. Debian's packages come from that release's archive and pip's
from the package index, over the host's network.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.roots import root_or_skip
from tests.sandbox import Sandbox
from tests.waiting import wait_for

# apt fetches Debian's Python packages, pip cronsim and apprise: minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

CHECKOUT = Path(__file__).resolve().parent.parent.parent
RELEASES = {"bookworm": "3.11", "trixie": "3.13"}
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The root's own CA bundle lacks the host's (which the package index's proxy needs);
# tests/roots.sh leaves a copy of the host's here.
HOST_CA = "/etc/ssl/observer-host-ca.crt"
CLONE = "/root/observer"
SHIPPED = ["pyproject.toml", "README.md", "observer", "packaging"]
APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"


def as_root(sandbox: Sandbox, line: str, timeout: float = 600) -> str:
    """Run a command line in a root login's environment inside; it must succeed."""
    env = [f"PATH={ROOT_PATH}", "HOME=/root", f"PIP_CERT={HOST_CA}", "LANG=C.UTF-8"]
    started = time.monotonic()
    result = sandbox.run("env", *env, "bash", "-c", line, check=False, timeout=timeout)
    print(f"# {line}  ({time.monotonic() - started:.1f} s)\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, f"{line!r} exited {result.returncode}: {result.stderr}"
    return result.stdout


@pytest.fixture(params=list(RELEASES))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, str]]:
    """A sandbox booted from a release's root, without observer; and the release's Python."""
    suite = str(request.param)
    root = root_or_skip(suite)
    with Sandbox.boot(root=root, share=[]) as sandbox:
        shutil.rmtree(sandbox.root / "opt/observer")
        yield sandbox, RELEASES[suite]


def copy_checkout(sandbox: Sandbox) -> None:
    """The files install.sh installs from, copied to CLONE inside."""
    target = sandbox.root / CLONE.lstrip("/")
    target.mkdir(parents=True)
    for name in SHIPPED:
        source = CHECKOUT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)


def version_of(sandbox: Sandbox, python: str) -> str:
    """The version of the Python at ``python`` inside, once it imports systemd's bindings."""
    return as_root(sandbox, f"{python} -c 'import sys, systemd; print(sys.version)'")


def history(sandbox: Sandbox, unit: str) -> list[dict[str, Any]]:
    shown = sandbox.run("/usr/local/bin/observer", "history", unit, "--json", check=False)
    return list(json.loads(shown.stdout)) if shown.returncode == 0 else []


def test_install_sh_installs_a_service_that_records_a_timers_run(
    server: tuple[Sandbox, str],
) -> None:
    sandbox, python = server
    copy_checkout(sandbox)
    printed = as_root(sandbox, f"cd {CLONE} && bash packaging/install.sh")
    assert "observer is recording" in printed

    assert version_of(sandbox, "/opt/observer/venv/bin/python").startswith(f"{python}.")
    probe = "import systemd.journal, dbus_fast; print(systemd.__file__)"
    imported = as_root(sandbox, f"/opt/observer/venv/bin/python -c {shlex.quote(probe)}")
    assert imported.startswith("/usr/lib/python3/dist-packages/systemd/")
    assert sandbox.unit_property("observer.service", "ActiveState") == "active"
    assert sandbox.unit_property("observer.service", "User") == "observer"

    sandbox.run("systemd-run", "--on-active=1s", "--unit=tock", "--",
                "/bin/sh", "-c", "echo tock; exit 3")  # fmt: skip
    tock = wait_for(
        lambda: [r for r in history(sandbox, "tock") if r["finished_at"]],
        timeout=60,
        what="tock's run in `observer history`",
    )[0]
    assert (tock["unit"], tock["trigger"]) == ("tock.service", "tock.timer")
    assert (tock["result"], tock["exit_status"]) == ("exit-code", 3)

    as_root(sandbox, f"cd {CLONE} && bash packaging/install.sh --uninstall --purge")
    assert sandbox.unit_property("observer.service", "LoadState") == "not-found"
    assert not (sandbox.root / "opt/observer").exists()
    assert not (sandbox.root / "var/lib/observer").exists()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built from a copy (a build leaves build/ behind)."""
    work = tmp_path_factory.mktemp("wheel")
    for name in ["pyproject.toml", "README.md", "observer"]:
        source = CHECKOUT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, work / name)
    built = subprocess.run(
        ["/usr/bin/python3", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", "dist", "."],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (found,) = (work / "dist").glob("*.whl")
    return found


def test_the_wheel_installs_with_pipx_under_its_own_name(
    server: tuple[Sandbox, str], wheel: Path
) -> None:
    sandbox, python = server
    assert wheel.name.startswith("systemd_observer-")
    shutil.copy(wheel, sandbox.root / "root")
    as_root(sandbox, f"apt-get update -q && {APT} pipx")
    # Debian's systemd bindings: PyPI has systemd-python only as source, to compile.
    as_root(sandbox, f"pipx install --system-site-packages /root/{wheel.name}")

    assert as_root(sandbox, "/root/.local/bin/observer --version").startswith("observer ")
    listed = as_root(sandbox, "pipx list --short")
    assert "systemd-observer 0.1.0" in listed.splitlines()
    # pipx 1.1 keeps its venvs in ~/.local/pipx, 1.7 in ~/.local/share/pipx
    pipx_python = '"$(dirname "$(readlink -f /root/.local/bin/observer)")/python"'
    assert version_of(sandbox, pipx_python).startswith(f"{python}.")
