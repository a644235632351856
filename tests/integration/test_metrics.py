"""A real Prometheus and a real node_exporter read what the real daemon exports about real runs."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.observed import ObserverDaemon, observer_cmd, oneshot
from tests.integration.prometheus import Process, Prometheus, free_port, http_get, need
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

# docs/metrics.md's snippet, unchanged, in a job run by a unit with DynamicUser=yes.
BACKUP_JOB = """\
#!/bin/sh
BACKUP_SIZE=123456
cat > $JOB_METRICS_FILE << EOF
# HELP job_backup_size_bytes Size of the backup in bytes
# TYPE job_backup_size_bytes gauge
job_backup_size_bytes{borg_repo="$BORG_REPO"} $BACKUP_SIZE
EOF
"""


class Exporting(ObserverDaemon):
    """The daemon with its metrics on a free port, a textfile, and the sandbox's job metrics."""

    def __init__(self, sandbox: Sandbox, workdir: Path, host: str = "") -> None:
        self.textfile_dir = workdir / "textfile"
        self.textfile_dir.mkdir()
        self.job_metrics = sandbox.root / "var/lib/observer/job-metrics"
        super().__init__(
            sandbox,
            workdir,
            config=(
                (f'host = "{host}"\n' if host else "") + "[metrics]\n"
                'listen = "127.0.0.1:0"\n'
                f'textfile_directory = "{self.textfile_dir}"\n'
                f'job_metrics_directory = "{self.job_metrics}"\n'
            ),
        )

    @property
    def metrics_url(self) -> str:
        found = wait_for(
            lambda: re.search(r"serving metrics on (http://127\.0\.0\.1:\d+/metrics)", self.log()),
            timeout=30,
            what="the daemon to serve metrics",
            check=self._alive,
        )
        return found.group(1)

    def metrics_file(self, action: str, unit: str) -> subprocess.CompletedProcess[str]:
        """`observer metrics-file ACTION UNIT` on the sandbox (its root, its systemd)."""
        argv = observer_cmd(
            "metrics-file", action, unit,
            "--root", str(self.sandbox.root),
            "--bus-address", self.sandbox.bus_address,
            "--db", "/var/lib/observer/observer.db",
        )  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def exporting(sandbox: Sandbox, tmp_path: Path) -> Iterator[Exporting]:
    daemon = Exporting(sandbox, tmp_path)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


def test_a_real_prometheus_scrapes_runs_timers_and_the_jobs_own_metrics(
    sandbox: Sandbox, exporting: Exporting, tmp_path: Path
) -> None:
    script = sandbox.root / "usr/local/bin/backup-job"
    script.write_text(BACKUP_JOB)
    script.chmod(0o755)
    sandbox.write_unit(
        "backup.service",
        "[Service]\nType=oneshot\nDynamicUser=yes\nEnvironment=BORG_REPO=/srv/borg\n"
        "ExecStart=/usr/local/bin/backup-job\n",
    )
    sandbox.write_unit("backup.timer", "[Timer]\nOnActiveSec=1h\n")
    sandbox.write_unit("sync.service", oneshot("exit 3"))
    sandbox.write_unit("worker.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    sandbox.daemon_reload()
    enabled = exporting.metrics_file("enable", "backup")
    assert "JOB_METRICS_FILE=/var/lib/observer/job-metrics/backup.service/metrics.prom" in (
        enabled.stdout
    )
    # Another unit's file that tries to pass for observer's own metrics.
    exporting.job_metrics.mkdir(parents=True, exist_ok=True)
    (exporting.job_metrics / "rogue.service.prom").write_text("observer_runs_total 999\n")

    with Prometheus(tmp_path / "prometheus", [exporting.metrics_url.split("/")[2]]) as prom:
        sandbox.systemctl("start", "backup.timer")
        for unit in ("backup.service", "backup.service", "sync.service", "sync.service"):
            sandbox.start(unit)
        sandbox.start("worker.service")

        prom.wait_value('up{job="observer"}', 1)
        prom.wait_value('observer_runs_total{unit="backup.service",result="success"}', 2)
        prom.wait_value('observer_runs_total{unit="sync.service",result="exit-code"}', 2)
        prom.wait_value('observer_consecutive_failures{unit="sync.service"}', 2)
        prom.wait_value('observer_last_run_exit_status{unit="sync.service"}', 3)
        prom.wait_value('observer_last_run_success{unit="backup.service"}', 1)
        prom.wait_value('observer_run_duration_seconds_count{unit="backup.service"}', 2)
        prom.wait_value('observer_running{unit="worker.service"}', 1)
        prom.wait_value(
            'job_backup_size_bytes{unit="backup.service",borg_repo="/srv/borg"}', 123456
        )
        prom.wait_value(
            'observer_custom_metrics_rejected_total{unit="rogue.service",reason="reserved_name"}',
            1,
        )
        next_trigger = prom.value(
            'observer_timer_next_trigger_timestamp_seconds{unit="backup.service",'
            'timer="backup.timer"}'
        )
        assert next_trigger is not None
        assert 3000 < next_trigger - time.time() <= 3600
        last_success = prom.value('observer_last_success_timestamp_seconds{unit="backup.service"}')
        assert last_success is not None
        assert 0 <= time.time() - last_success < 120
        assert prom.query('observer_runs_total{unit="rogue.service"}') == []

        # Without the drop-in and the file, the unit's metrics go away.
        disabled = exporting.metrics_file("disable", "backup.service")
        assert "metrics.prom" in disabled.stdout
        wait_for(
            lambda: prom.query("job_backup_size_bytes") == [],
            timeout=60,
            what="job_backup_size_bytes to disappear",
            check=prom.check,
        )
    assert not (sandbox.root / "etc/systemd/system/backup.service.d").exists()


def test_node_exporter_reads_the_textfile_and_promtool_accepts_the_exposition(
    sandbox: Sandbox, exporting: Exporting, tmp_path: Path
) -> None:
    node_exporter = need("prometheus-node-exporter", "prometheus-node-exporter")
    promtool = need("promtool", "prometheus")
    sandbox.write_unit("report.service", oneshot("echo done"))
    sandbox.write_unit("flaky.service", oneshot("exit 1"))
    sandbox.daemon_reload()
    sandbox.start("report.service")
    sandbox.start("flaky.service")
    textfile = exporting.textfile_dir / "observer.prom"

    wait_for(
        lambda: textfile.exists() and 'unit="flaky.service"' in textfile.read_text(),
        timeout=60,
        what="the textfile to show flaky.service",
    )
    port = free_port()
    argv = [
        node_exporter,
        "--collector.disable-defaults",
        "--collector.textfile",
        f"--collector.textfile.directory={exporting.textfile_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with Process(argv, tmp_path / "node_exporter.log") as node:

        def scraped() -> str | None:
            node.check()
            try:
                return http_get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return None

        text = wait_for(scraped, timeout=30, what="node_exporter to answer")
    assert "node_textfile_scrape_error 0" in text
    assert re.search(
        r'observer_runs_total\{host="[^"]+",result="exit-code",unit="flaky.service",user=""\} 1',
        text,
    )
    assert "process_cpu_seconds_total" in text  # node_exporter's own; observer's are left out

    exposition = http_get(exporting.metrics_url)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'observer_last_run_success{host="' in exposition
