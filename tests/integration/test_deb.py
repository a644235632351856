"""The Debian package: built from a clean clone by packaging/build-deb.sh, then installed,
used, upgraded, removed and purged with apt in a sandboxed systemd 252; and the same file
installed, used and purged on Debian 12 and 13 (roots of tests/roots.sh)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_install import CHECKOUT, as_root, file_system, unit_properties
from tests.roots import root_or_skip
from tests.sandbox import Sandbox
from tests.waiting import wait_for

# Two builds, then apt installs, upgrades and purges (its triggers run man-db): minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

BUILD_TIMEOUT = 900


def build(clone: Path, version: str, output: Path) -> Path:
    """packaging/build-deb.sh of ``clone`` at ``version``; lintian must report no error."""
    pyproject = clone / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('version = "0.1.0"', f'version = "{version}"', 1))
    built = subprocess.run(
        ["bash", str(clone / "packaging/build-deb.sh"), str(output)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    print(built.stdout, built.stderr)
    assert built.returncode == 0, built.stderr
    deb = output / f"observer_{version}_all.deb"
    assert deb.exists()
    assert "E: " not in (output / f"{deb.name}.lintian").read_text()
    return deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two versions of the package, built from a clone of this checkout's HEAD."""
    for tool in ("dpkg-buildpackage", "dh_python3", "lintian", "git"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: packaging/dev-setup.sh installs it")
    work = tmp_path_factory.mktemp("deb")
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(CHECKOUT), str(clone)], check=True)
    first = build(clone, "0.1.0", work / "out")
    second = build(clone, "0.1.0+1", work / "out")
    return first, second


def history(sandbox: Sandbox, unit: str) -> list[dict[str, object]]:
    shown = sandbox.run("observer", "history", unit, "--json", check=False)
    return json.loads(shown.stdout) if shown.returncode == 0 else []


def finished(sandbox: Sandbox, unit: str) -> list[dict[str, object]]:
    """The unit's finished runs (a run is recorded as it starts, then again as it ends)."""
    return [run for run in history(sandbox, unit) if run["finished_at"] is not None]


def test_the_package_installs_records_upgrades_keeps_data_on_remove_and_purges_clean(
    sandbox: Sandbox, debs: tuple[Path, Path]
) -> None:
    for deb in debs:
        shutil.copy(deb, sandbox.root / "root")
    # This machine is a container image whose policy-rc.d keeps apt from starting services
    # (exit 101); a server has none: the sandbox's copy goes.
    (sandbox.root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    before = file_system(sandbox)
    apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
    as_root(sandbox, f"{apt} /root/{debs[0].name}", cwd="/root", timeout=600)

    service = unit_properties(sandbox, "ActiveState", "User", "FragmentPath", "MainPID")
    assert service["ActiveState"] == "active"
    assert (service["User"], service["FragmentPath"]) == (
        "observer", "/lib/systemd/system/observer.service",
    )  # fmt: skip
    sandbox.systemd_run("/bin/sh", "-c", "echo hello from a run", unit="hello", wait=True)
    runs = wait_for(lambda: finished(sandbox, "hello"), timeout=60, what="hello's run recorded")
    assert runs[0]["result"] == "success"
    assert sandbox.run("stat", "-c", "%U:%G %a", "/var/lib/observer/observer.db").stdout == (
        "observer:observer 640\n"
    )
    # DynamicUser= units' metrics directory, which the unit binds, as install.sh makes it.
    assert (sandbox.root / "var/lib/private/observer/job-metrics").is_dir()

    # bash's own completion loader finds the script; it completes a recorded unit's name.
    driven = sandbox.run("bash", "-c", (
        "source /usr/share/bash-completion/bash_completion\n"
        "__load_completion observer && complete -p observer\n"
        "COMP_WORDS=(observer history hel); COMP_CWORD=2; _observer observer\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    ))  # fmt: skip
    assert driven.stdout.splitlines() == ["complete -F _observer observer", "hello.service"]
    # As a user (root's man would leave a formatted copy in man-db's cache).
    page = sandbox.run("runuser", "-u", "nobody", "--", "man", "observer", check=False)
    assert page.returncode == 0, page.stderr
    assert "observer history" in page.stdout

    # An upgrade keeps the history and restarts the daemon.
    config = sandbox.root / "etc/observer/observer.toml"
    edited = config.read_text().replace("# max_age_days = 90", "max_age_days = 30")
    config.write_text(edited)
    as_root(sandbox, f"{apt} /root/{debs[1].name}", cwd="/root", timeout=600)
    upgraded = unit_properties(sandbox, "ActiveState", "MainPID")
    assert upgraded["ActiveState"] == "active"
    assert upgraded["MainPID"] != service["MainPID"]
    version = sandbox.run("dpkg-query", "-W", "-f=${Version}", "observer").stdout
    assert version == "0.1.0+1"
    assert history(sandbox, "hello") == runs
    assert config.read_text() == edited

    # remove keeps the database and the config; purge takes them, the user and the group.
    as_root(sandbox, "apt-get remove -y -q observer", timeout=300)
    assert sandbox.unit_property("observer.service", "LoadState") == "not-found"
    assert not (sandbox.root / "usr/bin/observer").exists()
    assert (sandbox.root / "var/lib/observer/observer.db").exists()
    assert config.read_text() == edited
    as_root(sandbox, "apt-get purge -y -q observer", timeout=300)
    assert sandbox.run("getent", "passwd", "observer", check=False).returncode == 2
    assert sandbox.run("getent", "group", "observer", check=False).returncode == 2
    after = file_system(sandbox)
    left = sorted(set(after) - set(before))
    print("left after purge (new since before the install):", *left, sep="\n  ")
    assert [line for line in left if "observer" in line] == []
    assert [line for line in set(before) - set(after) if "observer" in line] == []


# Suite -> the python3 it has: the one package built above runs on each.
RELEASES = {"bookworm": "3.11", "trixie": "3.13"}


@pytest.mark.parametrize("suite", list(RELEASES))
def test_the_one_package_installs_records_and_purges_clean_on_each_release(
    suite: str, debs: tuple[Path, Path]
) -> None:
    root = root_or_skip(suite)
    with Sandbox.boot(root=root, share=[]) as sandbox:
        # A server without observer: tests/roots.sh's venv goes (in the throw-away layer).
        shutil.rmtree(sandbox.root / "opt/observer")
        shutil.copy(debs[0], sandbox.root / "root")
        as_root(sandbox, "apt-get update -q", cwd="/root", timeout=300)
        before = file_system(sandbox)
        apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
        as_root(sandbox, f"{apt} /root/{debs[0].name}", cwd="/root", timeout=600)

        service = unit_properties(sandbox, "ActiveState", "User")
        assert (service["ActiveState"], service["User"]) == ("active", "observer")
        python = sandbox.run("/usr/lib/observer/bin/python3", "-c", "import sys, apprise, "
                             "cronsim, observer; print(sys.version)").stdout  # fmt: skip
        assert python.startswith(f"{RELEASES[suite]}.")
        sandbox.systemd_run("/bin/sh", "-c", "echo hello from a run", unit="hello", wait=True)
        runs = wait_for(lambda: finished(sandbox, "hello"), timeout=60, what="hello's run recorded")
        assert runs[0]["result"] == "success"

        as_root(sandbox, "apt-get remove -y -q observer", cwd="/root", timeout=300)
        assert sandbox.unit_property("observer.service", "LoadState") == "not-found"
        assert (sandbox.root / "var/lib/observer/observer.db").exists()
        as_root(sandbox, "apt-get purge -y -q observer", cwd="/root", timeout=300)
        assert not (sandbox.root / "usr/lib/observer").exists()
        assert sandbox.run("getent", "passwd", "observer", check=False).returncode == 2
        after = file_system(sandbox)
    assert [line for line in set(after) - set(before) if "observer" in line] == []
    assert [line for line in set(before) - set(after) if "observer" in line] == []
