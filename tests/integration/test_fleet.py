"""The fleet end to end: two sandboxed servers (web1, web2), each with its own observer,
upload their journals with the real systemd-journal-upload to the real
systemd-journal-remote of a third (hub), set up by packaging/fleet/setup.sh; a central
observer reads what hub received. It must hold every run, trigger, result and output line
exactly as each server's own observer recorded it, through restarts of the receiver, the
uploaders and the central daemon mid-burst: over plain HTTP, and over HTTPS with the
certificates setup.sh makes, where an uploader without one of the fleet's is refused."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import waiting
from tests.conftest import sandbox_or_skip
from tests.integration.observed import ObserverDaemon, observer_cmd, oneshot
from tests.sandbox import Sandbox
from tests.waiting import NotInTime, wait_for

pytestmark = pytest.mark.integration

FLEET = Path(__file__).resolve().parents[2] / "packaging" / "fleet"
REMOTE = Path("/lib/systemd/systemd-journal-remote")
UPLOAD = Path("/lib/systemd/systemd-journal-upload")

# Every fact of a run that the central database must hold as the server's own does.
RUN_FACTS = (
    "unit, invocation_id, host, source, trigger, started_usec, finished_usec, result, "
    "exit_code, exit_status, restarts"
)


# A unit a timer starts every second: beyond the default start limit (5 in 10 s), which
# would refuse its 6th start (a run "start-limit-hit", and the timer gives up).
EVERY_SECOND = "[Unit]\nStartLimitIntervalSec=0\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def setup_sh(*args: str) -> None:
    """packaging/fleet/setup.sh on this machine (the admin's, holding the fleet's CA)."""
    subprocess.run(["bash", str(FLEET / "setup.sh"), *args], check=True, capture_output=True)


def make_certificates(directory: Path, *hosts: str) -> Path:
    """The fleet's CA in ``directory`` and a certificate for each host (hub also by address)."""
    setup_sh("ca", str(directory))
    for host in hosts:
        setup_sh("cert", str(directory), host, *(["127.0.0.1"] if host == "hub" else []))
    return directory


def hand_over(certificates: Path | None, host: Sandbox, name: str) -> str | None:
    """Copy the host's directory made by `setup.sh cert` into it, as an admin would."""
    if certificates is None:
        return None
    shutil.copytree(certificates / name, host.root / "root/fleet-tls", dirs_exist_ok=True)
    return "/root/fleet-tls"


def start_receiver(hub: Sandbox, port: int, certificates: Path | None = None) -> None:
    """packaging/fleet/setup.sh receiver, as a user runs it (inside the sandbox)."""
    tls = hand_over(certificates, hub, "hub")
    hub.run("bash", str(FLEET / "setup.sh"), "receiver", f"127.0.0.1:{port}", *filter(None, [tls]))


def start_uploader(server: Sandbox, port: int, name: str, certificates: Path | None = None) -> None:
    tls = hand_over(certificates, server, name)
    scheme = "http" if tls is None else "https"
    url = f"{scheme}://127.0.0.1:{port}"
    server.run("bash", str(FLEET / "setup.sh"), "uploader", url, *filter(None, [tls]))


def boot_host(name: str) -> Sandbox:
    sandbox = Sandbox.boot(timeout=30)
    try:
        sandbox.run("hostnamectl", "set-hostname", name)
    except BaseException:
        sandbox.close()
        raise
    return sandbox


class Central:
    """`observer daemon --fleet-dir` on what hub received, as a process."""

    def __init__(self, fleet_dir: Path, workdir: Path) -> None:
        self.fleet_dir = fleet_dir
        self.port = free_port()
        self.db = workdir / "central.db"
        self.log_path = workdir / "central.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["daemon", "--db", str(self.db), "--fleet-dir", str(self.fleet_dir)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                observer_cmd(*args, "--listen", f"127.0.0.1:{self.port}"), stdout=log, stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def fleet(self, *units: str) -> dict[str, dict[str, Any]]:
        """`observer fleet --json` on the central database: unit -> its entry."""
        shown = subprocess.run(
            observer_cmd("fleet", "--db", str(self.db), "--json", *units),
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return {u["unit"]: u for u in json.loads(shown.stdout)["units"]}

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text: str = r.read().decode()
            return text

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the central daemon exited:\n{self.log_path.read_text()}")


def recorded(db: Path, host: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A host's finished runs of the test's units and their output, as ``db`` holds them."""
    if not db.exists():
        return [], []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        runs = conn.execute(
            f"SELECT {RUN_FACTS} FROM runs WHERE host = ? AND unit LIKE 'job-%' "
            "AND finished_usec IS NOT NULL ORDER BY invocation_id",
            (host,),
        ).fetchall()
        output = conn.execute(
            "SELECT o.invocation_id, o.seq, o.priority, o.message FROM output o "
            "JOIN runs r ON r.invocation_id = o.invocation_id "
            "WHERE r.host = ? AND r.unit LIKE 'job-%' ORDER BY o.invocation_id, o.seq",
            (host,),
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return [], []
    finally:
        conn.close()
    return runs, output


def need_remote() -> None:
    sandbox_or_skip()
    if not REMOTE.exists() or shutil.which("nsenter") is None:
        pytest.skip("needs the Debian package systemd-journal-remote (packaging/dev-setup.sh)")


@pytest.fixture(params=["http", "https"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    need_remote()
    certificates = None
    if request.param == "https":
        certificates = make_certificates(tmp_path / "ca", "hub", "web1", "web2")
    port = free_port()
    booted: list[Sandbox] = []
    daemons: list[ObserverDaemon] = []
    central: Central | None = None
    try:
        hub = boot_host("hub")
        booted.append(hub)
        start_receiver(hub, port, certificates)
        servers = {}
        for name in ("web1", "web2"):
            server = boot_host(name)
            booted.append(server)
            workdir = tmp_path / name
            workdir.mkdir()
            own = ObserverDaemon(server, workdir, config=f'host = "{name}"\n')
            daemons.append(own)
            own.start()
            servers[name] = (server, own)
        for name, (server, _) in servers.items():
            start_uploader(server, port, name, certificates)
        central = Central(hub.root / "var/log/journal/remote", tmp_path)
        central.start()
        yield {"hub": hub, "servers": servers, "central": central}
    finally:
        if central is not None:
            central.kill()
        for daemon in daemons:
            daemon.close()
        for sandbox in reversed(booted):
            sandbox.close()


def add_jobs(server: Sandbox, host: str) -> None:
    """A timer-started job failing on web2 only, a burst job, and one only web1 has."""
    status = 3 if host == "web2" else 0
    server.write_unit(
        "job-tick.service",
        EVERY_SECOND + oneshot(f"echo tick on {host}; echo second line; exit {status}"),
    )
    server.write_unit(
        "job-tick.timer", "[Timer]\nOnActiveSec=0\nOnUnitActiveSec=1s\nAccuracySec=1ms\n"
    )
    server.write_unit(
        "job-burst@.service", oneshot(f"echo burst %i on {host}; test $((%i % 4)) -ne 0")
    )
    if host == "web1":
        server.write_unit("job-only1.service", oneshot("echo only here"))
    server.daemon_reload()
    server.systemctl("start", "job-tick.timer")


def beat(server: Sandbox) -> None:
    """A job that succeeds every second (on every host, until one stops it)."""
    server.write_unit("job-beat.service", EVERY_SECOND + oneshot("echo beat"))
    server.write_unit(
        "job-beat.timer", "[Timer]\nOnActiveSec=0\nOnUnitActiveSec=1s\nAccuracySec=1ms\n"
    )
    server.daemon_reload()
    server.systemctl("start", "job-beat.timer")


def burst(server: Sandbox, first: int, count: int) -> None:
    for i in range(first, first + count):
        server.start(f"job-burst@{i}.service", wait=False)


@pytest.mark.timeout(400)
def test_the_central_observer_records_both_hosts_runs_exactly_as_their_own_observers(
    fleet: dict[str, Any],
) -> None:
    hub: Sandbox = fleet["hub"]
    central: Central = fleet["central"]
    servers: dict[str, tuple[Sandbox, ObserverDaemon]] = fleet["servers"]
    for host, (server, _) in servers.items():
        add_jobs(server, host)
    web1, web2 = servers["web1"][0], servers["web2"][0]
    web1.start("job-only1.service")

    burst(web1, 0, 15)
    burst(web2, 0, 15)
    hub.systemctl("restart", "systemd-journal-remote.service")  # the receiver, mid-burst
    burst(web1, 15, 15)
    web1.systemctl("restart", "systemd-journal-upload.service")  # an uploader restarted
    burst(web2, 15, 15)
    web2.systemctl("kill", "-s", "KILL", "systemd-journal-upload.service")  # one killed
    burst(web1, 30, 10)
    central.kill()  # the central daemon, mid-burst
    burst(web2, 30, 10)
    central.start()
    burst(web1, 40, 10)
    burst(web2, 40, 10)
    for server, _ in servers.values():
        server.systemctl("stop", "job-tick.timer")

    def same(host: str) -> bool:
        central.check()
        own = recorded(servers[host][1].db, host)
        return bool(own[0]) and own == recorded(central.db, host)

    for host in servers:
        # Each server's runs settle (the last records are written 2 s after the end).
        wait_for(lambda h=host: len(recorded(servers[h][1].db, h)[0]) >= 51,  # type: ignore[misc]
                 timeout=60, what=f"{host}'s own runs")  # fmt: skip
    for host in servers:
        try:
            wait_for(lambda h=host: same(h), timeout=90, what=f"{host}'s runs at the centre")  # type: ignore[misc]
        except NotInTime:
            own_runs, own_output = recorded(servers[host][1].db, host)
            got_runs, got_output = recorded(central.db, host)
            missing = sorted(set(own_runs) - set(got_runs))[:5]
            extra = sorted(set(got_runs) - set(own_runs))[:5]
            own_only = sorted(set(own_output) - set(got_output))[:10]
            central_only = sorted(set(got_output) - set(own_output))[:10]
            raise AssertionError(
                f"{host}: runs {len(own_runs)} own, {len(got_runs)} central; missing {missing}; "
                f"differing {extra}; output lines only its own observer has {own_only}, "
                f"only the central has {central_only}"
            ) from None
    own_runs, _ = recorded(servers["web1"][1].db, "web1")
    ticks = [r for r in own_runs if r[0] == "job-tick.service"]
    assert ticks
    assert all(r[4] == "job-tick.timer" for r in ticks), ticks[:3]

    # journal-upload did send entries again (each reconnect), and they were skipped.
    assert "sent again (journal-upload reconnected)" in central.log_path.read_text()

    # What the central database says of the fleet: web2's tick fails, only web1 ran job-only1.
    conn = sqlite3.connect(f"file:{central.db}?mode=ro", uri=True)
    try:
        failing = conn.execute(
            "SELECT host, invocation_id, source, result, started_usec, finished_usec FROM runs "
            "WHERE unit = 'job-tick.service' AND result != 'success' ORDER BY started_usec"
        ).fetchall()
        only = conn.execute("SELECT DISTINCT host FROM runs WHERE unit = 'job-only1.service'")
        assert {row[0] for row in failing} == {"web2"}, failing
        assert only.fetchall() == [("web1",)]
    finally:
        conn.close()

    # `observer fleet` on the central database names the host whose run failed...
    ticks_seen = central.fleet("job-tick.service")["job-tick.service"]
    assert (ticks_seen["ok"], ticks_seen["failing"]) == (["web1"], ["web2"])

    # ...and metrics of the central daemon carry each run's host.
    def web2_exported() -> str | None:
        text = central.metrics()
        return text if 'host="web2",unit="job-tick.service"' in text else None

    metrics = wait_for(web2_exported, timeout=30, what="the central daemon's metrics of web2")
    assert 'observer_consecutive_failures{host="web2",unit="job-tick.service",user=""}' in metrics
    assert (
        'observer_consecutive_failures{host="web1",unit="job-tick.service",user=""} 0.0' in metrics
    )

    # ...and the host where a unit did not run: job-beat stops on web2 while web1's goes on.
    for server, _ in servers.values():
        beat(server)
    wait_for(lambda: len(recorded_beats(central.db, "web2")) >= 4, timeout=30, what="web2's beats")
    web2.systemctl("stop", "job-beat.timer")

    def beat_silent() -> dict[str, Any] | None:
        central.check()
        shown = central.fleet("job-beat.service").get("job-beat.service")
        return shown if shown is not None and shown["silent"] else None

    # Silent once its newest start is older than its usual interval plus a minute.
    beats_seen = wait_for(beat_silent, timeout=120, what="job-beat to be silent on web2")
    assert (beats_seen["ok"], beats_seen["silent"]) == (["web1"], ["web2"])


def recorded_beats(db: Path, host: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT invocation_id FROM runs WHERE host = ? AND unit = 'job-beat.service' "
            "AND finished_usec IS NOT NULL",
            (host,),
        ).fetchall()
    finally:
        conn.close()


def journal_file(host: Sandbox, marker: str) -> str:
    """A journal file inside ``host`` holding one entry of a host named 'intruder'."""
    now = time.time_ns() // 1000
    export = (
        f"__REALTIME_TIMESTAMP={now}\n__MONOTONIC_TIMESTAMP=1000\n"
        f"_BOOT_ID={'0123456789abcdef' * 2}\n_HOSTNAME=intruder\nMESSAGE={marker}\n\n"
    )
    path = f"/root/{marker}.journal"
    host.run(str(REMOTE), f"--output={path}", "-", input=export)
    return path


def upload(host: Sandbox, port: int, marker: str, *credentials: str) -> int:
    """systemd-journal-upload of one entry over HTTPS; its exit status."""
    uploaded = host.run(
        str(UPLOAD), f"--url=https://127.0.0.1:{port}", f"--file={journal_file(host, marker)}",
        "--follow=no", "--trust=/root/fleet-tls/ca.pem", *credentials, check=False, timeout=60,
    )  # fmt: skip
    return uploaded.returncode


def received(hub: Sandbox) -> str:
    """The messages of every entry hub's receiver wrote."""
    shown = hub.run("journalctl", "--directory=/var/log/journal/remote", "-o", "cat", check=False)
    return shown.stdout


@pytest.mark.timeout(200)
def test_over_https_the_receiver_refuses_an_uploader_without_a_certificate_of_the_fleets_ca(
    tmp_path: Path,
) -> None:
    need_remote()
    certificates = make_certificates(tmp_path / "ca", "hub", "web1")
    make_certificates(tmp_path / "other-ca", "web1")  # a certificate of web1 from another CA
    port = free_port()
    with boot_host("hub") as hub, boot_host("web1") as web1:
        start_receiver(hub, port, certificates)
        hand_over(certificates, web1, "web1")
        shutil.copytree(tmp_path / "other-ca/web1", web1.root / "root/other-ca")

        # No client certificate at all, then one the fleet's CA did not sign: both refused.
        assert upload(web1, port, "sent-without-a-certificate", "--key=-", "--cert=-") != 0
        other = ("--key=/root/other-ca/key.pem", "--cert=/root/other-ca/cert.pem")
        assert upload(web1, port, "sent-with-another-cas-certificate", *other) != 0
        # The same upload with web1's own certificate goes through: the refusals were the
        # certificates', and the receiver writes in arrival order, so what it refused before
        # the admitted entry arrived never will.
        own = ("--key=/root/fleet-tls/key.pem", "--cert=/root/fleet-tls/cert.pem")
        assert upload(web1, port, "sent-with-the-fleets-certificate", *own) == 0

        def admitted() -> str | None:
            text = received(hub)
            return text if "sent-with-the-fleets-certificate" in text else None

        shown = waiting.wait_for(
            admitted, timeout=30, what="the entry sent with the fleet's certificate at hub"
        )
        assert "sent-without-a-certificate" not in shown
        assert "sent-with-another-cas-certificate" not in shown
