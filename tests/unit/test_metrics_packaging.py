"""The exposition, alert rules, scrape config and dashboard, checked by promtool and each other."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from observer.config import MetricsConfig
from observer.metrics.service import MetricsService
from tests.unit.recorded_runs import invocation, write_store

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "packaging" / "prometheus"
DASHBOARD = ROOT / "packaging" / "grafana" / "observer-dashboard.json"
JOB_METRICS = """\
# HELP job_backup_size_bytes Size of the backup in bytes
# TYPE job_backup_size_bytes gauge
job_backup_size_bytes{borg_repo="/srv/borg"} 1234
"""


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: packaging/dev-setup.sh installs it (prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return subprocess.run(
        ["promtool", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=PROMETHEUS,
        timeout=120,
        check=False,
    )


@pytest.fixture
def exposition(tmp_path: Path) -> Iterator[bytes]:
    """What the daemon serves for the sample store, with a job's metrics file."""
    db = write_store(tmp_path / "observer.db")
    (tmp_path / "job-metrics").mkdir()
    (tmp_path / "job-metrics" / "backup.service.prom").write_text(JOB_METRICS)
    daemon = SimpleNamespace(
        host="host1",
        runs_recorded=5,
        store_errors=0,
        store_writable=True,
        runs_set_aside=0,
        intake=SimpleNamespace(
            running=lambda: {("host1", "backup.service"): invocation(4)},
            events_fed=12,
            unattributed_lines=0,
            lost_lines=0,
        ),
        pending=SimpleNamespace(journal_cursor=None),
        journal_queue=SimpleNamespace(empty=lambda: True),
    )
    service = MetricsService(daemon, db, MetricsConfig(listen=""))
    try:
        service._refresh({("host1", "backup.service"): invocation(4)})
        yield service.render()
    finally:
        service._reset_connection()
        service._executor.shutdown()


def exported_names(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_the_exposition_passes_promtool_check_metrics(exposition: bytes) -> None:
    result = promtool("check", "metrics", stdin=exposition)

    assert result.returncode == 0, result.stdout + result.stderr
    assert b'job_backup_size_bytes{borg_repo="/srv/borg",unit="backup.service"} 1234.0' in (
        exposition
    )
    assert b'observer_running{host="host1",unit="backup.service",user=""} 1.0' in exposition


RULE_FILES = {"observer-alerts": 7, "observer-fleet-alerts": 2}


@pytest.mark.parametrize(("name", "count"), RULE_FILES.items())
def test_the_alert_rules_pass_promtool_check_rules(name: str, count: int) -> None:
    result = promtool("check", "rules", f"{name}.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout


@pytest.mark.parametrize("name", RULE_FILES)
def test_each_alert_fires_when_it_should_and_stays_quiet_otherwise(name: str) -> None:
    tests = (PROMETHEUS / f"{name}.test.yml").read_text()
    rules = re.findall(r"- alert: (\w+)", (PROMETHEUS / f"{name}.yml").read_text())
    for rule in rules:
        section = tests.split(f"alertname: {rule}\n")
        # At least one evaluation expects nothing and one expects an alert.
        assert any(s.lstrip().startswith("exp_alerts: []") for s in section[1:]), rule
        assert any(s.lstrip().startswith("exp_alerts:\n") for s in section[1:]), rule

    result = promtool("test", "rules", f"{name}.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


def referenced_metrics(text: str) -> set[str]:
    names = set(re.findall(r"\bobserver_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def test_the_rules_and_the_dashboard_use_only_metrics_observer_exports(
    exposition: bytes,
) -> None:
    exported = exported_names(exposition.decode())
    rules = "".join((PROMETHEUS / f"{name}.yml").read_text() for name in RULE_FILES)
    dashboard = DASHBOARD.read_text()

    assert referenced_metrics(rules) - exported == set()
    assert referenced_metrics(dashboard) - exported == set()


def test_the_dashboard_is_importable_json_with_a_panel_for_each_question() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    titles = [panel["title"] for panel in dashboard["panels"]]
    assert titles == [
        "Units",
        "$unit: since last success",
        "Run duration",
        "Runs by result",
        "Failures",
        "Timers",
        "Metrics the jobs report",
    ]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(titles)
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables == ["datasource", "job", "host", "unit"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
