"""A throw-away real systemd booted as PID 1 of its own namespaces, for tests and demos."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from tests import waiting

log = logging.getLogger(__name__)

T = TypeVar("T")

SYSTEMD = Path("/lib/systemd/systemd")
# Commands inside get a clean environment: nothing of the caller's (NOTIFY_SOCKET,
# LISTEN_FDS, SYSTEMD_*, DBUS_*) may leak into the sandbox's manager or tools.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
SANDBOX_TARGET = """\
[Unit]
Description=Sandbox
Requires=dbus.socket systemd-journald.socket
Wants=systemd-journal-flush.service
After=dbus.socket systemd-journald.socket systemd-journal-flush.service
"""
# Started by setpriv, which has the kernel SIGKILL it when the parent thread dies (unshare then
# kills the sandbox's PID 1, which takes the whole namespace down); $PPID, read after that,
# tells whether the parent ($1) died first. preexec_fn would do the same but is not safe in a
# threaded process. It moves into the sandbox's fresh cgroup ($2) because unshare --cgroup
# roots the namespace there: sandboxes then never share unit cgroups with each other.
LAUNCHER = """\
test "$PPID" = "$1" && echo 0 > "$2/cgroup.procs" || exit 1
exec unshare --pid --fork --kill-child=SIGKILL --mount --cgroup --uts --ipc -- \\
    /bin/sh -c "$3" boot "$4" "$5" "$6" "$7"
"""
# Runs inside the new namespaces. The scratch tmpfs goes over /tmp itself, not a new
# directory, so that not even an empty directory is left on the host. Bind-mounting the host's
# /dev and /sys (as a first recipe did) let the sandbox create /dev/log on the host, read its
# /dev/kmsg, and create cgroups in the host's v1 hierarchies (escaping the memory cgroup; two
# sandboxes shared system.slice/*): so /dev is a private tmpfs, /sys a fresh read-only sysfs
# and /sys/fs/cgroup the sandbox's own cgroup2 subtree. The masked units would touch the
# shared kernel (sysctls, modules, binfmt, audit) or are useless here. Arguments: $1 paths to
# keep, $2 the kept journal directory, $3 the lower root, $4 "machine" to boot as one.
# Booted as a machine, the manager would start what touches hardware or the clock.
MACHINE_MASKED = (
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-timesyncd.service",
    "systemd-random-seed.service", "fstrim.service", "fstrim.timer", "getty@.service",
    "serial-getty@.service", "console-getty.service", "getty.target", "systemd-pstore.service",
    "systemd-fsck-root.service", "systemd-fsck@.service", "systemd-hwdb-update.service",
)  # fmt: skip
# Capabilities a machine's PID 1 would use on the kernel all sandboxes share: the clock
# (it resets the kernel's time zone and may step the time) and kernel modules.
MACHINE_DROPPED_CAPS = "-sys_time,-sys_module"
BOOT_SCRIPT = f"""\
set -eu
mount --make-rprivate /
L=$(realpath "$3")
mount -t tmpfs -o mode=700 tmpfs /tmp
mkdir /tmp/upper /tmp/work /tmp/root
mount -t overlay overlay -o lowerdir="$L",upperdir=/tmp/upper,workdir=/tmp/work /tmp/root
R=/tmp/root
mount -t proc proc $R/proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs $R/sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 $R/sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid tmpfs $R/dev
mknod -m 666 $R/dev/null c 1 3
mknod -m 666 $R/dev/zero c 1 5
mknod -m 666 $R/dev/full c 1 7
mknod -m 666 $R/dev/random c 1 8
mknod -m 666 $R/dev/urandom c 1 9
mknod -m 666 $R/dev/tty c 5 0
mknod -m 666 $R/dev/ptmx c 5 2
mount -t tmpfs -o mode=755 tmpfs $R/run
# Paths under /tmp the caller needs inside (a checkout and its venv: CI may clone into
# /tmp) are kept visible, read through the overlay so that writes stay private.
mkdir /tmp/keep
printf '%s\n' "$1" | while IFS= read -r p; do
    if [ -n "$p" ] && [ -d "$R$p" ]; then
        k=/tmp/keep/$(printf '%s' "$p" | md5sum | cut -c1-16)
        mkdir "$k" && mount --bind "$R$p" "$k" && printf '%s %s\n' "$k" "$p" >> /tmp/keep/list
    fi
done
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
if [ -f /tmp/keep/list ]; then
    while read -r k p; do mkdir -p "$R$p" && mount --move "$k" "$R$p"; done < /tmp/keep/list
fi
# the host's journal files sit in the lower layer: start from an empty, private journal, or
# the caller's directory ($2), which outlives this sandbox
mkdir -p $R/var/log/journal
if [ -n "$2" ]; then
    mount --bind "$2" $R/var/log/journal
else
    mount -t tmpfs -o mode=2755 tmpfs $R/var/log/journal
fi
mkdir -p $R/run/lock $R/run/systemd/system
for u in systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \\
         systemd-modules-load.service systemd-remount-fs.service tmp.mount \\
         systemd-update-utmp.service systemd-journald-audit.socket dev-hugepages.mount \\
         sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \\
         sys-fs-fuse-connections.mount; do
    ln -sf /dev/null $R/run/systemd/system/$u
done
cat > $R/run/systemd/system/sandbox.target <<'EOF'
{SANDBOX_TARGET}EOF
if [ "$4" = machine ]; then
    # No container marker anywhere: systemd then does (and logs) what it does on a machine.
    rm -f $R/.dockerenv $R/.containerenv
    for u in {" ".join(MACHINE_MASKED)}; do
        ln -sf /dev/null $R/run/systemd/system/$u
    done
fi
cd $R && mkdir -p oldroot && pivot_root . oldroot && umount -l /oldroot
# What systemd does at boot outside a container: mounts it makes in a unit's namespace
# (credentials' /run/credentials/UNIT) must reach its own. Shared among this namespace's
# mounts only: they were made private above, so nothing propagates to the host.
mount --make-rshared /
[ "$4" = machine ] || export container=other
exec {SYSTEMD} --system --unit=sandbox.target
"""
RUNNING_STATES = ("running", "degraded")
# The root sandboxes boot by default: the host's, or a release's (tests/roots.sh) named by
# suite (OBSERVER_TEST_ROOT=trixie) or by path, to run the whole suite against that systemd.
ROOT_VARIABLE = "OBSERVER_TEST_ROOT"
# Set to 1, sandboxes boot as machines by default (no container marker): the whole suite
# then sees what a server's systemd does, not a container's.
MACHINE_VARIABLE = "OBSERVER_TEST_MACHINE"


@functools.cache
def default_root() -> Path:
    """The root named by $OBSERVER_TEST_ROOT, built on first use; the host's without it."""
    named = os.environ.get(ROOT_VARIABLE, "")
    if named in ("", "/"):
        return Path("/")
    if named.startswith("/"):
        return Path(named)
    from tests import roots  # noqa: PLC0415 - roots imports this module

    return roots.build(named)


def _default_share() -> list[Path]:
    """This checkout and the running venv, if under /tmp (which the sandbox replaces)."""
    candidates = {Path(__file__).resolve().parent.parent, Path(sys.prefix).resolve()}
    return sorted(p for p in candidates if p.is_relative_to("/tmp") and "\n" not in str(p))


class SandboxError(RuntimeError):
    """The sandbox could not be booted or driven."""


def can_boot(root: Path = Path("/")) -> str | None:
    """Return None if a sandbox of ``root`` can be booted here, else the reason why not."""
    if os.geteuid() != 0:
        return "booting a systemd sandbox needs root (CAP_SYS_ADMIN)"
    for tool in ("unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (it comes with util-linux)"
    if not os.access(root / SYSTEMD.relative_to("/"), os.X_OK):
        return f"{SYSTEMD} is missing in {root}: install systemd"
    if _own_cgroup2() is None:
        return "no cgroup2 hierarchy is mounted: the sandbox's manager needs one"
    return None


# What observer keeps on a server: a sandbox of the host's root reads the host's through
# its overlay, so an observer run as root on the host (or installed there) would be found
# by every sandbox's tests as if they had made it.
OBSERVER_STATE = (Path("/var/lib/observer"), Path("/etc/observer"))


def stray_state(root: Path = Path("/")) -> str | None:
    """Why sandboxes of ``root`` would not start clean (observer's state in it), or None."""
    found = [str(p) for p in OBSERVER_STATE if (root / p.relative_to("/")).exists()]
    if not found:
        return None
    return (
        f"{' and '.join(found)} {'exist' if len(found) > 1 else 'exists'} in {root}, which "
        "the sandboxes boot from: they would "
        "see that observer's database and configuration; remove them (or test in a clean "
        "root) and run again"
    )


def _own_cgroup2() -> Path | None:
    """Return the directory of this process's cgroup in the host's cgroup2 hierarchy."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    roots = [fields[1] for line in mounts if (fields := line.split())[2] == "cgroup2"]
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    own = [line[3:] for line in lines if line.startswith("0::")]
    if roots and own and (directory := Path(roots[0], own[0].lstrip("/"))).is_dir():
        return directory
    return None


def _remove_cgroup(cgroup: Path) -> None:
    """Remove a cgroup subtree whose processes are gone, deepest first."""
    subtree = sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for directory in [*subtree, cgroup]:
        # A killed process may stay in its cgroup for a moment after it was reaped.
        for _ in range(100):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
        else:
            log.warning("could not remove the sandbox's cgroup %s", directory)


def _remove_stale_cgroups(parent: Path) -> None:
    """Remove the empty cgroups of sandboxes whose Python process was killed."""
    for cgroup in parent.glob("observer-sandbox-*"):
        # The cgroup of a sandbox still booting is empty too: spare young ones.
        with contextlib.suppress(OSError):
            empty = "populated 0" in (cgroup / "cgroup.events").read_text()
            if empty and time.time() - cgroup.stat().st_mtime > 60:
                _remove_cgroup(cgroup)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # it has exited
        return ""


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").glob("*/children")
        for child in task.read_text().split()
    ]


class Sandbox:
    """A real systemd on a copy-on-write view of the host; nothing it does reaches the host."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        console_fd: int,
        cgroup: Path,
        kept_journal: Path | None = None,
    ) -> None:
        self._process = process
        #: The host directory holding the journal files, when the caller keeps them.
        self.kept_journal = kept_journal
        self._console_fd = console_fd
        #: The host cgroup (v2) holding every process of the sandbox, e.g. for its cpu.stat.
        self.cgroup = cgroup
        self._pidfd = -1
        self._closed = False
        self.pid = 0
        atexit.register(self.close)

    @classmethod
    def boot(
        cls,
        timeout: float = 30,
        share: Sequence[Path] | None = None,
        journal: Path | None = None,
        root: Path | None = None,
        machine: bool | None = None,
    ) -> Self:
        """Boot a sandbox and return once its manager is running.

        ``share``: directories under /tmp to keep visible inside (default: this checkout
        and the running Python's environment, when they live there). ``journal``: a host
        directory to keep the journal files in (they outlive the sandbox: boot another one
        on it), not under /tmp; by default they live and die with the sandbox. ``root``: the
        tree the sandbox sees (copy-on-write), e.g. another release's (tests/roots.sh);
        by default default_root().
        ``machine``: boot as a machine (no container marker, what touches hardware masked);
        by default when $OBSERVER_TEST_MACHINE is 1.
        """
        if machine is None:
            machine = os.environ.get(MACHINE_VARIABLE) == "1"
        if journal is not None:
            if journal.resolve().is_relative_to("/tmp"):
                # The boot script mounts a fresh /tmp before it could bind the directory.
                raise SandboxError(f"the kept journal {str(journal)!r} must not be under /tmp")
            journal.mkdir(parents=True, exist_ok=True)
            journal.chmod(0o2755)
        shared = _default_share() if share is None else list(share)
        root = default_root() if root is None else root
        if reason := can_boot(root):
            raise SandboxError(reason)
        parent_cgroup = _own_cgroup2()
        assert parent_cgroup is not None  # can_boot() checked it
        _remove_stale_cgroups(parent_cgroup)
        cgroup = parent_cgroup / f"observer-sandbox-{secrets.token_hex(6)}"
        cgroup.mkdir()
        # The console goes to a memfd: nothing on disk, and PID 1 never blocks on a full pipe.
        console_fd = os.memfd_create("observer-sandbox-console")
        try:
            # The pdeathsig fires when the calling thread ends: boot from a long-lived thread.
            dropped = ["--bounding-set", MACHINE_DROPPED_CAPS] if machine else []
            launcher = ["setpriv", "--pdeathsig", "KILL", *dropped, "--", "/bin/sh", "-c", LAUNCHER]
            process = subprocess.Popen(
                [
                    *launcher,
                    "launcher",
                    str(os.getpid()),
                    str(cgroup),
                    BOOT_SCRIPT,
                    "\n".join(str(p) for p in shared),
                    "" if journal is None else str(journal.resolve()),
                    str(root),
                    "machine" if machine else "container",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console_fd,
                stderr=console_fd,
                env=CLEAN_ENV,
            )
        except BaseException:
            os.close(console_fd)
            cgroup.rmdir()
            raise
        sandbox = cls(process, console_fd, cgroup, journal)
        try:
            sandbox._await_boot(time.monotonic() + timeout)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def _await_boot(self, deadline: float) -> None:
        while not (children := _children(self._process.pid)):
            self._before(deadline, "the sandbox's PID 1 to be forked")
        # A pidfd pins the process: a signal never hits a recycled pid. If the boot script
        # has already failed, _before() reports it.
        with contextlib.suppress(ProcessLookupError):
            self._pidfd = os.pidfd_open(children[0])
        # Until the boot script has pivoted and exec'd systemd, nsenter would land in the
        # host's root, where a systemctl could talk to the host's manager: pid stays 0.
        while _comm(children[0]) != "systemd":
            self._before(deadline, "the boot script to exec systemd")
        self.pid = children[0]
        while (state := self.state()) not in RUNNING_STATES:
            self._before(deadline, f"the manager to finish booting (it is {state!r})")
        if state == "degraded":
            failed = self.systemctl("--failed", "--plain", "--no-legend", check=False)
            log.warning("sandbox booted degraded, failed units:\n%s", failed.stdout)
        log.debug("sandbox booted, its PID 1 is host pid %d", self.pid)

    def _before(self, deadline: float, what: str) -> None:
        if self._process.poll() is not None:
            raise SandboxError(
                f"the sandbox exited with status {self._process.returncode} while booting; "
                f"console:\n{self.console_log()}"
            )
        if time.monotonic() > deadline:
            jobs = self.systemctl("list-jobs", check=False).stdout if self.pid else ""
            raise SandboxError(
                f"timed out waiting for {what}; jobs:\n{jobs}\nconsole:\n{self.console_log()}"
            )
        time.sleep(0.02)

    def console_log(self, limit: int = 64 * 1024) -> str:
        """Return the tail of what the boot script and PID 1 wrote to their console."""
        if self._console_fd < 0:
            return ""
        size = os.fstat(self._console_fd).st_size
        return os.pread(self._console_fd, limit, max(0, size - limit)).decode(errors="replace")

    @property
    def root(self) -> Path:
        """The sandbox's root directory as seen from the host."""
        return Path(f"/proc/{self.pid}/root")

    @property
    def bus_address(self) -> str:
        """The D-Bus address of the sandbox's system bus, usable from the host."""
        return f"unix:path={self.root}/run/dbus/system_bus_socket"

    @property
    def journal_dir(self) -> Path:
        """The directory of the sandbox's journal files (a private tmpfs, or the kept one)."""
        return self.kept_journal if self.kept_journal is not None else self.root / "var/log/journal"

    def kill(self) -> None:
        """SIGKILL the sandbox's PID 1, as a crash or a power cut would end it: nothing is
        stopped or written first. The namespace dies with it."""
        if self._process.poll() is None and self._pidfd >= 0:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            self._process.wait(10)
            select.select([self._pidfd], [], [], 5)

    def run(
        self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside all of the sandbox's namespaces."""
        if self._closed or not self.pid:
            raise SandboxError("the sandbox is not running")
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=CLEAN_ENV,
            check=False,
        )
        if check and result.returncode != 0:
            raise SandboxError(
                f"{' '.join(argv)!r} failed inside the sandbox with status "
                f"{result.returncode}: {result.stderr.strip()}"
            )
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run systemctl inside."""
        return self.run("systemctl", "--no-pager", *args, check=check)

    def state(self) -> str:
        """Return the manager's state as systemctl is-system-running says it."""
        return self.systemctl("is-system-running", check=False).stdout.strip()

    def write_unit(self, name: str, text: str, directory: str = "/etc/systemd/system") -> Path:
        """Write a unit file inside and return its host path; daemon_reload() loads it."""
        path = self.root / directory.lstrip("/") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def remove_unit(self, name: str, directory: str = "/etc/systemd/system") -> None:
        """Delete a unit file inside; daemon_reload() forgets it."""
        (self.root / directory.lstrip("/") / name).unlink(missing_ok=True)

    def daemon_reload(self) -> None:
        """Make the manager re-read its unit files."""
        self.systemctl("daemon-reload")

    def daemon_reexec(self, timeout: float = 30) -> None:
        """Make the manager re-execute itself and wait until it answers again."""
        # systemctl may lose its connection mid-call: the wait below is the real check.
        self.systemctl("daemon-reexec", check=False)
        self.wait_for(
            lambda: self.state() in RUNNING_STATES,
            timeout,
            what="the manager to answer after daemon-reexec",
        )

    def restart_dbus(self, timeout: float = 30) -> None:
        """Restart the system bus and wait until the manager is reachable on it again."""
        self.systemctl("restart", "dbus.service")
        # dbus.socket keeps listening, so connect() succeeds even while no dbus-daemon runs:
        # only a call that PID 1 answers through the bus proves both are back.
        ping = ["busctl", "--auto-start=no", "call", "org.freedesktop.systemd1"]
        ping += ["/org/freedesktop/systemd1", "org.freedesktop.DBus.Peer", "Ping"]
        self.wait_for(
            lambda: self.run(*ping, check=False).returncode == 0,
            timeout,
            what="systemd to be back on the restarted system bus",
        )

    def start(self, unit: str, wait: bool = True) -> subprocess.CompletedProcess[str]:
        """Start a unit; a failing unit does not raise: check the returned process."""
        return self.systemctl("start", *([] if wait else ["--no-block"]), unit, check=False)

    def systemd_run(
        self,
        *cmd: str,
        unit: str | None = None,
        properties: Iterable[str] = (),
        wait: bool = False,
        service_type: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd as a transient service; with wait=True a failing run does not raise."""
        argv = ["systemd-run", *([f"--unit={unit}"] if unit else [])]
        argv += [f"--property={prop}" for prop in properties]
        argv += ["--wait"] if wait else []
        argv += [f"--service-type={service_type}"] if service_type else []
        return self.run(*argv, "--", *cmd, check=not wait)

    def systemd_version(self) -> int:
        """The release of the sandbox's systemd (252 for "systemd 252 (252.39-1~deb12u1)")."""
        return int(self.run("systemctl", "--version").stdout.split()[1])

    def unit_property(self, unit: str, prop: str) -> str:
        """Return one property of a unit as systemctl show prints it."""
        return self.systemctl("show", "--property", prop, "--value", unit).stdout.rstrip("\n")

    @staticmethod
    def wait_for(
        predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "..."
    ) -> T:
        """Poll predicate until it returns something true, and return that (tests/waiting.py)."""
        return waiting.wait_for(predicate, timeout=timeout, what=what, every=interval)

    def wait_inactive(self, unit: str, timeout: float = 30) -> str:
        """Wait until a unit is inactive or failed, and return which."""

        def settled() -> str:
            state = self.unit_property(unit, "ActiveState")
            return state if state in ("inactive", "failed") else ""

        return self.wait_for(settled, timeout, what=f"{unit} to become inactive")

    def journal(self, *args: str) -> str:
        """Run journalctl inside and return its output."""
        return self.run("journalctl", "--no-pager", *args).stdout

    def poweroff(self, timeout: float = 20) -> None:
        """Power the sandbox off, kill it if it does not stop in time, and reap it."""
        if self._process.poll() is None and self.pid and not self._closed:
            try:
                self.systemctl("poweroff", "--no-block", check=False)
                self._process.wait(timeout)
            except (subprocess.TimeoutExpired, SandboxError) as error:
                log.warning("the sandbox did not power off (%s): killing it", error)
        if self._process.poll() is None:
            # Killing PID 1 kills the whole namespace; unshare then reaps it and exits.
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                self._process.kill()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._pidfd >= 0:
            # PID 1 is unshare's child, not ours: its pidfd turns readable once it is gone.
            select.select([self._pidfd], [], [], 5)

    def close(self) -> None:
        """Tear the sandbox down; safe to call more than once."""
        if self._closed:
            return
        try:
            self.poweroff()
            _remove_cgroup(self.cgroup)
        finally:
            self._closed = True
            atexit.unregister(self.close)
            for fd in (self._pidfd, self._console_fd):
                if fd >= 0:
                    os.close(fd)
            self._pidfd = self._console_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
