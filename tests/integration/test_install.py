"""packaging/install.sh in a sandboxed systemd, run exactly as docs/install.md's blocks say.

docs/install.md marks its blocks with ``<!-- install.sh: NAME -->``; each line of a block is run
as root from the checkout, with root's usual PATH. The host's file system is the
sandbox's lower layer, so the checkout is inside at the same path; pip fetches the
dependencies from the package index as on a real server (PIP_* settings pass through).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox import Sandbox
from tests.waiting import wait_for

# apt removes the compilers and installs Debian's Python packages, then pip: minutes.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

CHECKOUT = Path(__file__).resolve().parent.parent.parent
INSTALL_DOC = CHECKOUT / "docs" / "install.md"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_TIMEOUT = 1200  # a first install builds systemd-python; the machine may be busy
UNIT = "observer.service"
DB = "/var/lib/observer/observer.db"
CONFIG = "/etc/observer/observer.toml"
# What install.sh adds, for checksums of "nothing changed".
# The checkout is copied first: files changing in it while a test runs would make an upgrade.
CLONE = "/tmp/observer"
INSTALLED = ["/opt/observer", "/etc/observer", "/etc/systemd/system/observer.service",
             "/usr/local/bin/observer", "/usr/local/share/man/man1/observer.1",
             "/usr/local/share/bash-completion/completions/observer",
             "/usr/local/share/zsh/site-functions/_observer",
             "/usr/local/share/fish/vendor_completions.d/observer.fish"]  # fmt: skip
# Compilers and headers: install.sh must need none of them.
BUILD_TOOLS = re.compile(r"(gcc|g\+\+|cpp|clang|c\+\+)(-\d+)?|.+-dev")
# What install.sh takes from Debian: removed first, so that it must install them itself.
DEBIAN_PYTHON = ["python3-systemd", "python3-dbus-fast", "python3-jinja2",
                 "python3-prometheus-client"]  # fmt: skip


def documented_commands(name: str) -> list[str]:
    """The lines of docs/install.md's ``sh`` block marked ``<!-- install.sh: NAME -->``."""
    marked = re.search(
        rf"^<!-- install\.sh: {re.escape(name)} -->\n```sh\n(.*?)^```$",
        INSTALL_DOC.read_text(),
        re.MULTILINE | re.DOTALL,
    )
    assert marked is not None, f"docs/install.md has no block marked <!-- install.sh: {name} -->"
    return [line for line in marked[1].splitlines() if line.strip()]


def as_root(
    sandbox: Sandbox, line: str, cwd: str = str(CHECKOUT), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one command line in a root shell inside the sandbox; it must succeed."""
    env = [f"PATH={ROOT_PATH}", "HOME=/root"]
    env += [f"{k}={v}" for k, v in os.environ.items() if k.startswith("PIP_")]
    script = f"cd {shlex.quote(cwd)} && {line}"
    result = sandbox.run("env", *env, "bash", "-c", script, check=False, timeout=timeout)
    assert result.returncode == 0, (
        f"{line!r} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def clone(sandbox: Sandbox, to: str = CLONE) -> str:
    """A copy of the checkout inside the sandbox (/tmp there is its own), as of now."""
    files = "pyproject.toml README.md observer packaging"
    as_root(sandbox, f"mkdir -p {to} && cp -a {files} {to}")
    as_root(sandbox, f"find {to} -name __pycache__ -prune -exec rm -r {{}} +")
    return to


def follow_docs(sandbox: Sandbox, block: str, cwd: str = CLONE) -> str:
    """Run a block of docs/install.md line by line; return what it printed."""
    printed = []
    for line in documented_commands(block):
        started = time.monotonic()
        result = as_root(sandbox, line, cwd, timeout=INSTALL_TIMEOUT)
        print(f"# {line}  ({time.monotonic() - started:.1f} s)\n{result.stdout}{result.stderr}")
        printed.append(result.stdout)
    return "".join(printed)


def login_shell(sandbox: Sandbox, user: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as ``user`` in a login shell (PATH and groups as at a fresh login)."""
    return sandbox.run("runuser", "-l", user, "-c", command, check=False, timeout=60)


def unit_properties(sandbox: Sandbox, *names: str) -> dict[str, str]:
    shown = sandbox.systemctl("show", UNIT, *(f"--property={n}" for n in names)).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def exposure(sandbox: Sandbox) -> float:
    """`systemd-analyze security`'s overall exposure of the installed unit (printed)."""
    report = sandbox.run("systemd-analyze", "security", "--no-pager", UNIT).stdout
    print(report)
    level = re.search(r"Overall exposure level for observer\.service: ([\d.]+)", report)
    assert level is not None, report
    return float(level[1])


def history(sandbox: Sandbox, user: str, unit: str) -> list[dict[str, Any]]:
    result = login_shell(sandbox, user, f"observer history {unit} --json")
    if result.returncode == 1 and "no runs recorded" in result.stderr:
        return []
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, Any]] = json.loads(result.stdout)
    return runs


def scrape(port: int, needle: str) -> str | None:
    """The daemon's /metrics once it holds ``needle``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text: str = r.read().decode()
    except OSError:
        return None
    return text if needle in text else None


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def installed_packages(sandbox: Sandbox) -> list[str]:
    listed = sandbox.run("dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n").stdout
    return [line.split()[0] for line in listed.splitlines() if line.endswith(" installed")]


def build_tools(sandbox: Sandbox) -> list[str]:
    return [p for p in installed_packages(sandbox) if BUILD_TOOLS.fullmatch(p.split(":")[0])]


def test_the_installed_service_records_a_timers_run_for_members_of_the_observer_group(
    sandbox: Sandbox,
) -> None:
    # A server without a compiler, headers, or Debian's Python packages observer uses (the
    # sandbox's own copy of the package database: the host keeps its packages).
    removed = [*build_tools(sandbox), *DEBIAN_PYTHON]
    as_root(sandbox, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q " + " ".join(removed))
    assert build_tools(sandbox) == []
    assert sandbox.run("sh", "-c", "command -v gcc cc c++", check=False).stdout == ""
    clone(sandbox)
    follow_docs(sandbox, "install")
    assert build_tools(sandbox) == []
    assert set(DEBIAN_PYTHON) <= set(installed_packages(sandbox))
    probe = "import systemd.journal, dbus_fast; print(systemd.__file__)"
    imported = sandbox.run("/opt/observer/venv/bin/python", "-c", probe)
    assert imported.stdout.startswith("/usr/lib/python3/dist-packages/systemd/")

    service = unit_properties(sandbox, "ActiveState", "User", "Type", "WatchdogUSec", "MainPID")
    assert service["ActiveState"] == "active"
    assert (service["User"], service["Type"], service["WatchdogUSec"]) == (
        "observer", "notify", "1min",
    )  # fmt: skip
    daemon_user = sandbox.run("ps", "-o", "user=", "-p", service["MainPID"]).stdout.strip()
    assert daemon_user == "observer"
    assert exposure(sandbox) < 2.0

    # alice is let in as docs/install.md says; bob is not.
    sandbox.run("useradd", "--create-home", "alice")
    sandbox.run("useradd", "--create-home", "bob")
    for line in documented_commands("reader"):
        as_root(sandbox, line)

    # A timer (transient: tock.timer starts tock.service a second from now) whose run fails.
    sandbox.run("systemd-run", "--on-active=1s", "--unit=tock", "--",
                "/bin/sh", "-c", "echo tock from the timer; exit 3")  # fmt: skip

    def finished(unit: str) -> dict[str, Any] | None:
        runs = [r for r in history(sandbox, "alice", unit) if r["finished_at"]]
        return runs[0] if runs else None

    tock = wait_for(lambda: finished("tock"), timeout=60, what="tock's run, read by alice")
    assert (tock["unit"], tock["trigger"]) == ("tock.service", "tock.timer")
    assert (tock["result"], tock["exit_status"]) == ("exit-code", 3)

    def output_of(run_id: int) -> list[str] | None:
        shown = login_shell(sandbox, "alice", f"observer show {run_id} --json")
        assert shown.returncode == 0, shown.stderr
        lines = [line["message"] for line in json.loads(shown.stdout)["output"]]
        return lines or None

    # The output came from the journal: the daemon reads it under its hardening.
    assert wait_for(lambda: output_of(tock["id"]), timeout=30, what="tock's output") == [
        "tock from the timer"
    ]
    status = login_shell(sandbox, "alice", "observer status")
    assert status.returncode == 0, status.stderr
    print(f"$ observer status  # as alice\n{status.stdout}")

    # alice's bash completes the unit's name (bash-completion finds the script in
    # /usr/local/share), and man finds the page.
    bash = (
        "source /usr/share/bash-completion/bash_completion; __load_completion observer; "
        "COMP_WORDS=(observer history to); COMP_CWORD=2; _observer observer; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    completed = login_shell(sandbox, "alice", f"bash -c {shlex.quote(bash)}")
    assert completed.stdout.splitlines() == ["tock.service"], completed.stderr
    page = login_shell(sandbox, "alice", "man observer | grep -c 'observer history'")
    assert int(page.stdout.strip() or 0) > 0, page.stderr

    refused = login_shell(sandbox, "bob", "observer status")
    print(f"$ observer status  # as bob\n{refused.stderr}")
    assert refused.returncode == 1
    assert "usermod -a -G observer bob" in refused.stderr, refused.stderr

    # The metrics endpoint listens under RestrictAddressFamilies (the sandbox shares the
    # host's network, so it gets a free port rather than the default one).
    port = free_port()
    config = sandbox.root / CONFIG.lstrip("/")
    config.write_text(
        config.read_text().replace('# listen = "127.0.0.1:9089"', f'listen = "127.0.0.1:{port}"')
    )
    as_root(sandbox, "observer check-config && systemctl restart observer")

    scraped = wait_for(
        lambda: scrape(port, 'unit="tock.service"'), timeout=60, what="the metrics endpoint"
    )
    assert "observer_" in scraped

    # With the daemon stopped, no -wal or -shm file is left: alice still reads the run as
    # it was just before (not as first read: its cost and findings come after its end).
    recorded = finished("tock")
    assert recorded is not None
    assert recorded["id"] == tock["id"]
    as_root(sandbox, "systemctl stop observer")
    assert not (sandbox.root / f"{DB.lstrip('/')}-wal").exists()
    assert finished("tock") == recorded


def test_install_again_changes_nothing_upgrade_keeps_config_and_history_uninstall_clears_up(
    sandbox: Sandbox,
) -> None:
    clone(sandbox)
    before = file_system(sandbox)
    assert len(before) > 1000
    follow_docs(sandbox, "install")
    assert file_system(sandbox) != before
    config = sandbox.root / CONFIG.lstrip("/")
    assert config.read_text() == (sandbox.root / CLONE[1:] / "packaging/observer.toml").read_text()
    assert sandbox.run("stat", "-c", "%U:%G %a", "/var/lib/observer", DB).stdout.split("\n")[
        :2
    ] == ["observer:observer 751", "observer:observer 640"]

    # An admin edits the config; the daemon records a run.
    edited = config.read_text().replace("# max_age_days = 90", "max_age_days = 30")
    config.write_text(edited)
    sandbox.systemd_run("/bin/true", unit="hello", wait=True)
    wait_for(lambda: run_count(sandbox) > 0, timeout=60, what="a recorded run")
    runs = run_count(sandbox)

    installed = checksums(sandbox)
    service = unit_properties(sandbox, "MainPID", "ExecMainStartTimestamp", "NRestarts")
    printed = follow_docs(sandbox, "install")
    assert checksums(sandbox) == installed
    assert unit_properties(sandbox, "MainPID", "ExecMainStartTimestamp", "NRestarts") == service
    assert config.read_text() == edited
    assert "restarting" not in printed
    assert "installing observer" not in printed

    # An upgrade: the same command from a newer checkout.
    newer = clone(sandbox, "/tmp/observer-newer")
    as_root(sandbox, f"echo '# a newer version' >> {newer}/observer/__init__.py")
    printed = follow_docs(sandbox, "install", cwd=newer)
    assert "restarting observer.service" in printed
    upgraded = unit_properties(sandbox, "ActiveState", "MainPID")
    assert upgraded["ActiveState"] == "active"
    assert upgraded["MainPID"] != service["MainPID"]
    assert config.read_text() == edited
    assert run_count(sandbox) >= runs
    site = sandbox.run("/opt/observer/venv/bin/python", "-c",
                       "import observer; print(observer.__file__)").stdout.strip()  # fmt: skip
    assert (sandbox.root / site.lstrip("/")).read_text().endswith("# a newer version\n")

    # Uninstall keeps the history and the edited config, and nothing else.
    printed = follow_docs(sandbox, "uninstall")
    assert sandbox.unit_property(UNIT, "LoadState") == "not-found"
    assert sandbox.run("getent", "passwd", "observer", check=False).returncode == 2
    assert sandbox.run("getent", "group", "observer", check=False).returncode == 2
    for path in [
        "/opt/observer",
        "/usr/local/bin/observer",
        "/etc/systemd/system/observer.service",
    ]:
        assert not os.path.lexists(sandbox.root / path.lstrip("/")), path
    assert config.read_text() == edited
    assert (sandbox.root / DB.lstrip("/")).exists()
    assert f"kept: {CONFIG} /var/lib/observer" in printed

    # Installed again, it picks up the history and the config it kept.
    follow_docs(sandbox, "install")
    assert run_count(sandbox) >= runs
    assert config.read_text() == edited

    # Purge removes everything: the file system is as it was before the install.
    follow_docs(sandbox, "purge")
    assert file_system(sandbox) == before


def run_count(sandbox: Sandbox) -> int:
    counted = sandbox.run("/usr/local/bin/observer", "runs", "--since", "1h", "--json", check=False)
    return len(json.loads(counted.stdout)) if counted.returncode == 0 else 0


def checksums(sandbox: Sandbox) -> str:
    """Every file install.sh put in place, with its content's checksum, mode and owner."""
    script = (
        "find " + " ".join(INSTALLED) + " -printf '%p %y %m %u:%g %l\\n' | sort; "
        "find " + " ".join(INSTALLED) + " -type f -print0 | sort -z | xargs -0 sha256sum"
    )
    return sandbox.run("sh", "-c", script, timeout=120).stdout


def file_system(sandbox: Sandbox) -> list[str]:
    """The file system where install.sh writes, and the user and group databases.

    Left out: the journal and systemd's own state, shadow's backup files (/etc/passwd- and
    the like), which useradd and userdel rewrite, /var/tmp, which the sandbox shares with
    the host (tests running beside this one keep a journal there), and the host's cache of
    other releases' roots (tests/roots.sh may build or update one beside this test).
    """
    script = (
        "find /etc /opt /usr/local /var /srv -xdev "
        r"\( -path /var/log/journal -o -path /var/lib/systemd -o -path /var/tmp "
        r"-o -path /var/cache/observer-test-roots "
        r"-o -name '*-' \) -prune "
        "-o -printf '%p %y %m %u:%g\\n' | sort; "
        "find /etc -xdev -type f ! -name '*-' -print0 | sort -z | xargs -0 sha256sum"
    )
    return sandbox.run("sh", "-c", script, timeout=120).stdout.splitlines()


# docs/metrics.md's snippet, in a unit with DynamicUser=yes (whose directory systemd keeps
# under /var/lib/private, closed to the daemon's user).
DYNAMIC_JOB = """\
#!/bin/sh
cat > $JOB_METRICS_FILE << EOF
# HELP job_backup_size_bytes Size of the backup in bytes
# TYPE job_backup_size_bytes gauge
job_backup_size_bytes 123456
EOF
"""
SPOOL = "/var/lib/observer/spool"


def test_the_installed_service_takes_roots_spooled_runs_dynamic_users_metrics_and_killed_runs(
    sandbox: Sandbox,
) -> None:
    clone(sandbox)
    follow_docs(sandbox, "install")
    port = free_port()
    config = sandbox.root / CONFIG.lstrip("/")
    config.write_text(
        config.read_text().replace('# listen = "127.0.0.1:9089"', f'listen = "127.0.0.1:{port}"')
    )
    as_root(sandbox, "systemctl restart observer")

    # A DynamicUser= unit reports metrics; the hardened daemon, user observer, exports them.
    script = sandbox.root / "usr/local/bin/dyn-backup"
    script.write_text(DYNAMIC_JOB)
    script.chmod(0o755)
    sandbox.write_unit(
        "dyn-backup.service",
        "[Service]\nType=oneshot\nDynamicUser=yes\nExecStart=/usr/local/bin/dyn-backup\n",
    )
    as_root(sandbox, "systemctl daemon-reload && observer metrics-file enable dyn-backup")
    as_root(sandbox, "systemctl start dyn-backup")
    print(sandbox.run("ls", "-lR", "/var/lib/private/observer").stdout)

    exported = wait_for(
        lambda: scrape(port, "job_backup_size_bytes"),
        timeout=60,
        what="the DynamicUser unit's metrics",
    )
    assert 'job_backup_size_bytes{unit="dyn-backup.service"} 123456.0' in exported
    assert "observer_custom_metrics_rejected_total{" not in exported

    # Root's `observer run` cannot write the database (another writer holds it for 15 s):
    # the run goes into the daemon's spool, owned by observer, beside two hostile files.
    hold = (
        "import sqlite3, time; c = sqlite3.connect('/var/lib/observer/observer.db', "
        "isolation_level=None); c.execute('BEGIN IMMEDIATE'); print('held', flush=True); "
        "time.sleep(15)"
    )
    assert sandbox.run("stat", "-c", "%U", SPOOL).stdout == "observer\n"
    as_root(sandbox, f"ln -sf /etc/shadow {SPOOL}/0-link.json")
    as_root(sandbox, f"echo '{{\"format\": 1' > {SPOOL}/1-garbage.json")
    shadow = (sandbox.root / "etc/shadow").read_bytes()
    wrapped = as_root(
        sandbox,
        f'(python3 -c "{hold}" > /tmp/held 2>&1 &) ; sleep 1; grep -q held /tmp/held; '
        "observer run --name locked-out -- sh -c 'echo spooled; exit 5'; echo \"status $?\"",
        timeout=60,
    )
    assert wrapped.stdout == "spooled\nstatus 5\n", wrapped.stdout
    assert f"kept in '{SPOOL}/" in wrapped.stderr, wrapped.stderr

    def locked_out() -> list[dict[str, Any]]:
        return [r for r in history(sandbox, "root", "locked-out") if r["finished_at"]]

    spooled = sandbox.run("sh", "-c", f"stat -c '%U %a %n' {SPOOL}/*.json").stdout
    assert f"observer 600 {SPOOL}/" in spooled, spooled
    [run] = wait_for(locked_out, timeout=60, what="the spooled run in the daemon's database")
    assert (run["result"], run["exit_status"], run["source"]) == ("exit-code", 5, "wrapper")
    left = sandbox.run("ls", "-A", SPOOL).stdout.split()
    assert {"0-link.bad", "1-garbage.bad"} <= set(left), left
    assert not [name for name in left if name.endswith(".json")], left
    assert (sandbox.root / "etc/shadow").read_bytes() == shadow
    assert (
        "imported spooled run locked-out"
        in sandbox.run("journalctl", "-u", UNIT, "--no-pager").stdout
    )

    # Root's `observer run` killed by SIGKILL: the daemon (which cannot see root's processes)
    # closes its run as interrupted.
    as_root(
        sandbox,
        "(setsid sh -c 'echo $$ > /tmp/killed.pid; exec observer run --name killed -- sleep 300'"
        " &) </dev/null >/dev/null 2>&1",
    )

    def written_pid() -> str:
        return sandbox.run("cat", "/tmp/killed.pid", check=False).stdout.strip()

    pid = wait_for(written_pid, timeout=30, what="the pid of `observer run`")

    def running() -> dict[str, Any] | None:
        runs = history(sandbox, "root", "killed")
        return runs[0] if runs and runs[0]["finished_at"] is None else None

    wait_for(running, timeout=30, what="the run of `observer run` to be recorded as running")
    as_root(sandbox, f"kill -9 -- -{pid}")

    def interrupted() -> dict[str, Any] | None:
        runs = history(sandbox, "root", "killed")
        return runs[0] if runs and runs[0]["result"] == "interrupted" else None

    closed = wait_for(interrupted, timeout=60, what="the killed run to be closed")
    assert closed["finished_at"] is not None
    assert sandbox.run("ls", "-A", f"{SPOOL}/live").stdout.split() == []
