"""`observer jobs` through the real CLI and daemon against a sandboxed systemd."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon, observer_cmd
from tests.integration.prometheus import http_get
from tests.sandbox import Sandbox
from tests.unit.test_jobs import HOSTILE
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SECRET = "s3cret-passphrase-7f1c"

JOBS = """\
[jobs.tick]
description = "Tick every two seconds"
command = '''sha256sum "$CREDENTIALS_DIRECTORY/token" | cut -c1-64
printf 'job_tick_size_bytes 4096\\n' > "$JOB_METRICS_FILE"'''
schedule = "every 2s"
credentials = { token = "/etc/observer/credentials/token" }

[jobs.slow]
command = ["/bin/sleep", "30"]
schedule = "Mon *-*-* 03:00"
timeout = "1s"

[jobs.fails]
command = "echo failing; exit 3"
schedule = "0 4 * * *"

[jobs.fails.alerts]
failures = 1
"""


class Jobs(ObserverDaemon):
    """The daemon serving metrics, and `observer jobs` pointed at the sandbox."""

    def __init__(self, sandbox: Sandbox, workdir: Path) -> None:
        self.job_metrics = sandbox.root / "var/lib/observer/job-metrics"
        self.jobs_file = workdir / "jobs.toml"
        super().__init__(sandbox, workdir, config=(
            f'[metrics]\nlisten = "127.0.0.1:0"\njob_metrics_directory = "{self.job_metrics}"\n'
            f'[jobs]\nfile = "{self.jobs_file}"\n[alerts]\ncheck_interval = 1\n'
        ))  # fmt: skip
        # What the units see: the sandbox's /var/lib (the daemon reads it through /proc).
        self.jobs_config = workdir / "jobs-side.toml"
        self.jobs_config.write_text(
            '[metrics]\njob_metrics_directory = "/var/lib/observer/job-metrics"\n'
        )

    def metrics_url(self) -> str:
        """Where the daemon started last serves /metrics."""
        found = wait_for(
            lambda: re.findall(
                r"serving metrics on (http://127\.0\.0\.1:\d+/metrics)",
                self.log().split(f"--- start {self.starts}\n")[-1],
            ),
            timeout=30, what="the metrics endpoint", check=self._alive,
        )  # fmt: skip
        return str(found[-1])

    def jobs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = observer_cmd(
            "jobs", *args, "--file", str(self.jobs_file), "--root", str(self.sandbox.root),
            "--bus-address", self.sandbox.bus_address, "--config", str(self.jobs_config),
            "--db", str(self.db),
        )  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def jobs(sandbox: Sandbox, tmp_path: Path) -> Iterator[Jobs]:
    daemon = Jobs(sandbox, tmp_path)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


def test_declared_jobs_run_on_schedule_with_their_credential_metrics_and_timeout(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    credential = sandbox.root / "etc/observer/credentials/token"
    credential.parent.mkdir(parents=True)
    credential.write_text(SECRET)
    credential.chmod(0o644)
    jobs.jobs_file.write_text(JOBS)
    refused = jobs.jobs("apply", check=False)
    assert refused.returncode == 1
    assert "chmod 600 /etc/observer/credentials/token" in refused.stderr
    assert not (sandbox.root / "etc/systemd/system/tick.service").exists()
    credential.chmod(0o600)

    applied = jobs.jobs("apply")
    assert "added tick (tick.service, tick.timer)" in applied.stdout
    assert "added slow" in applied.stdout
    assert jobs.jobs("apply").stdout.startswith("nothing to change: 3 jobs")

    runs = jobs.finished_runs("tick.service", 2, timeout=60)
    assert {r["trigger"] for r in runs} == {"tick.timer"}
    assert all(r["result"] == "success" for r in runs)
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert jobs.output(runs[0]["id"], 1) == [digest]  # the job read the credential

    url = jobs.metrics_url()
    wait_for(
        lambda: 'job_tick_size_bytes{unit="tick.service"} 4096.0' in http_get(url),
        timeout=30, what="the job's own metric",
    )  # fmt: skip

    listed = {j["name"]: j for j in json.loads(jobs.jobs("--json").stdout)}
    assert listed["tick"]["unit"] == "tick.service"
    assert listed["tick"]["timer"] == "tick.timer"
    assert listed["tick"]["schedule"] == ["every 2s"]
    assert listed["tick"]["last_result"] == "success"
    assert listed["tick"]["next_run_at"] is not None
    assert listed["slow"]["last_started_at"] is None

    slow = jobs.jobs("run", "slow", "--wait", check=False)
    assert slow.returncode != 0
    assert re.search(r"Result:\s+timeout", slow.stdout), slow.stdout
    assert jobs.history("slow")[0]["result"] == "timeout"
    # The job's alert rules reach the daemon (read when it starts): one failure alerts.
    jobs.stop()
    jobs.start()
    fails = jobs.jobs("run", "fails", "--wait", check=False)
    assert fails.returncode == 3, fails.stdout + fails.stderr
    assert re.search(r"Exit status: 3", fails.stdout), fails.stdout
    failed = jobs.history("fails")[0]
    assert failed["result"] == "exit-code"
    assert failed["trigger"] is None  # started by hand, not by its timer
    assert jobs.output(failed["id"], 1) == ["failing"]
    alerts = wait_for(
        lambda: [a for a in jobs.json("alerts") if a["unit"] == "fails.service"],
        timeout=60, what="the alert of fails.service", check=jobs._alive,
    )  # fmt: skip
    assert alerts[0]["kind"] == "failing", alerts

    # The secret is nowhere but in the job's credentials directory.
    seen = [
        sandbox.systemctl("show", "tick.service").stdout,
        sandbox.systemctl("cat", "tick.service").stdout,
        sandbox.journal("-o", "verbose"),
        jobs.cli("runs", "--json").stdout,
        *(jobs.cli("show", str(r["id"]), "--json").stdout for r in runs),
        jobs.jobs("show", "tick").stdout,
        http_get(jobs.metrics_url()),
        jobs.log(),
    ]
    assert not [text for text in seen if SECRET in text]

    # A removed job's units are gone, and its timer with them.
    jobs.jobs_file.write_text(JOBS.split("[jobs.slow]", 1)[0])
    removed = jobs.jobs("apply")
    assert "removed fails" in removed.stdout
    assert "removed slow" in removed.stdout
    assert not (sandbox.root / "etc/systemd/system/slow.timer").exists()
    assert not (sandbox.root / "etc/systemd/system/timers.target.wants/slow.timer").exists()
    timers = sandbox.systemctl("list-timers", "--all").stdout
    assert "tick.timer" in timers
    assert "slow.timer" not in timers


def test_hostile_values_reach_systemd_exactly_as_written_and_add_no_setting(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    description = '50% of %n for $HOME "q" \\ [Service] ExecStartPre=/bin/false'
    jobs.jobs_file.write_text(
        "[jobs.hostile]\n"
        f"command = {json.dumps(['/bin/echo', *HOSTILE])}\n"
        f"environment = {{ A = {json.dumps(' | '.join(HOSTILE))} }}\n"
        f"description = {json.dumps(description)}\n"
        'schedule = "daily"\nmetrics = false\n'
    )
    jobs.jobs("apply")
    path = "/org/freedesktop/systemd1/unit/hostile_2eservice"

    def get(interface: str, name: str) -> object:
        shown = sandbox.run("busctl", "--json=short", "get-property", "org.freedesktop.systemd1",
                            path, f"org.freedesktop.systemd1.{interface}", name).stdout  # fmt: skip
        return json.loads(shown)["data"]

    exec_start = get("Service", "ExecStart")
    assert isinstance(exec_start, list)
    assert len(exec_start) == 1
    assert exec_start[0][0] == "/bin/echo"
    # systemd keeps the argv as read, before it expands $ at each start ($$ is one $).
    assert exec_start[0][1] == ["/bin/echo", *(a.replace("$", "$$") for a in HOSTILE)]
    assert get("Service", "Environment") == [f"A={' | '.join(HOSTILE)}"]
    assert get("Unit", "Description") == description
    assert get("Service", "ExecStartPre") == []
    assert get("Service", "User") == ""
    # $ is not expanded when it runs either: the job prints its arguments as written.
    ran = jobs.jobs("run", "hostile", "--wait")
    assert "Result:      success" in ran.stdout
    run_id = jobs.history("hostile")[0]["id"]
    printed = "\n".join(jobs.output(run_id, 3))
    assert "$HOME ${PATH} $$" in printed
    assert "50% %n %i %h" in printed


def test_a_job_its_own_sandbox_breaks_is_refused_until_fixed_and_then_runs(
    sandbox: Sandbox, jobs: Jobs
) -> None:
    probe = sandbox.root / "var/tmp/probe.sh"
    probe.write_text("#!/bin/sh\necho probed\n")
    probe.chmod(0o755)
    # What the check is about: in the job's sandbox the program is not there (203/EXEC).
    hidden = sandbox.run("systemd-run", "--wait", "-p", "PrivateTmp=yes", "/var/tmp/probe.sh",
                         check=False)  # fmt: skip
    assert "status=203" in hidden.stdout + hidden.stderr, hidden.stdout + hidden.stderr

    # A string (run by /bin/sh -c): systemd-analyze verify, run outside the sandbox, does not
    # look for the program of a script.
    declared = '[jobs.probe]\ncommand = "/var/tmp/probe.sh"\nschedule = "daily"\nmetrics = false\n'
    jobs.jobs_file.write_text(declared)
    refused = jobs.jobs("apply", check=False)
    assert refused.returncode == 1
    assert (
        f"{jobs.jobs_file}:1: job 'probe': PrivateTmp=yes gives the job an empty /var/tmp of "
        "its own, and its program /var/tmp/probe.sh is there: move the program out of /var/tmp "
        "(e.g. to /usr/local/bin) or set `hardening = false`"
    ) in refused.stderr
    assert not (sandbox.root / "etc/systemd/system/probe.service").exists()

    jobs.jobs_file.write_text(declared + "hardening = false\n")
    assert "added probe" in jobs.jobs("apply").stdout
    ran = jobs.jobs("run", "probe", "--wait")
    assert "Result:      success" in ran.stdout
    assert jobs.output(jobs.history("probe")[0]["id"], 1) == ["probed"]

    # A write below /etc, opened again by read_write_paths: ReadWritePaths= works as said.
    stamp = (
        '[jobs.stamp]\ncommand = "date > /etc/stamps/last"\nschedule = "daily"\nmetrics = false\n'
    )
    jobs.jobs_file.write_text(stamp)
    refused = jobs.jobs("apply", check=False)
    assert refused.returncode == 1
    assert (
        "job 'stamp': ProtectSystem=full makes /etc read-only, and its command writes "
        '/etc/stamps/last: add `read_write_paths = ["/etc/stamps/last"]` or `hardening = false`'
    ) in refused.stderr
    jobs.jobs_file.write_text(stamp + 'read_write_paths = ["/etc/stamps"]\n')
    missing = jobs.jobs("apply", check=False)
    assert "create it (install -d /etc/stamps)" in missing.stderr
    (sandbox.root / "etc/stamps").mkdir()
    assert "added stamp" in jobs.jobs("apply").stdout
    assert "Result:      success" in jobs.jobs("run", "stamp", "--wait").stdout
    assert (sandbox.root / "etc/stamps/last").read_text().strip()
