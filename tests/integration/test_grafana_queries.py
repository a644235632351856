"""Every query of the Grafana dashboard, and every alert rule, against a real Prometheus.

The Prometheus scrapes the real daemon recording a sandbox whose timers start a job that
succeeds (and reports a metric of its own), one that fails and one that is slow.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.observed import oneshot
from tests.integration.prometheus import Prometheus
from tests.integration.test_metrics import BACKUP_JOB, Exporting
from tests.sandbox import Sandbox
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging" / "grafana" / "observer-dashboard.json"
RULE_FILES = [
    ROOT / "packaging" / "prometheus" / "observer-alerts.yml",
    ROOT / "packaging" / "prometheus" / "observer-fleet-alerts.yml",
]
SCRAPE_INTERVAL = 1  # seconds, as tests/integration/prometheus.py configures it
RANGE = 15 * 60  # the time range the range queries cover, in seconds
STEP = 15  # Grafana's $__interval for that range on a narrow panel, in seconds
# What the dashboard shows when it opens: every variable at "All", which Grafana sends as
# the variable's allValue.
ALL = {"job": ".+", "host": ".+", "unit": ".+"}
SUCCEEDING, FAILING, SLOW = "backup.service", "sync.service", "slow.service"


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One query of one panel, as the dashboard file holds it."""

    panel: str
    ref_id: str
    expr: str
    instant: bool
    interval: str  # the panel's minimum interval, "" for Grafana's own

    def promql(self, variables: dict[str, str]) -> str:
        """The query as Grafana sends it: template variables replaced by their values."""
        interval = seconds(self.interval) if self.interval else STEP
        # Grafana: $__rate_interval = max($__interval + scrape interval, 4 * scrape interval)
        rate_interval = max(interval + SCRAPE_INTERVAL, 4 * SCRAPE_INTERVAL)
        text = (
            self.expr.replace("$__rate_interval", f"{rate_interval}s")
            .replace("$__interval", f"{interval}s")
            .replace("$__range", f"{RANGE}s")
        )
        for name, value in variables.items():
            text = text.replace(f"${name}", value)
        assert "$" not in text, f"{self.panel} {self.ref_id}: a variable is left in {text}"
        return text


def seconds(interval: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(interval[:-1]) * units[interval[-1]]


def panel_queries() -> list[PanelQuery]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        PanelQuery(
            panel["title"],
            target["refId"],
            target["expr"],
            bool(target.get("instant")),
            panel.get("interval", ""),
        )
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


# The units (or metric names, for the jobs' own metrics) each query must show series for.
EXPECTED = {
    ("Units", "A"): {SUCCEEDING, SLOW},  # a unit that never succeeded has no "since"
    ("Units", "B"): {SUCCEEDING, FAILING, SLOW},
    ("Units", "C"): {SUCCEEDING, FAILING, SLOW},
    ("Units", "D"): {SUCCEEDING, FAILING, SLOW},
    ("Units", "E"): {SUCCEEDING, FAILING, SLOW},
    ("Run duration", "A"): {SUCCEEDING, FAILING, SLOW},
    ("Run duration", "B"): {SUCCEEDING, FAILING, SLOW},
    ("Runs by result", "A"): {SUCCEEDING, FAILING, SLOW},
    ("Failures", "A"): {FAILING},
    ("Failures", "B"): {FAILING},
    ("Failures", "C"): {SUCCEEDING, FAILING, SLOW},
    ("Failures", "D"): {FAILING},
    ("Timers", "A"): {SUCCEEDING, FAILING, SLOW},
    ("Timers", "B"): {SUCCEEDING, FAILING, SLOW},
    ("Metrics the jobs report", "A"): {SUCCEEDING},
}


def shown_units(prom: Prometheus, query: PanelQuery, variables: dict[str, str]) -> set[str]:
    """The units among the series a query returns that hold a value Grafana can draw.

    A rate or an increase of runs must be above 0 somewhere: a panel of zeros shows no run.
    """
    promql = query.promql(variables)
    counts_runs = "rate(" in promql or "increase(" in promql
    if query.instant:
        series = prom.api("query", query=promql)["result"]
        values = [[item["value"]] for item in series]
    else:
        now = time.time()
        series = prom.api(
            "query_range", query=promql, start=str(now - RANGE), end=str(now), step=str(STEP)
        )["result"]
        values = [item["values"] for item in series]
    return {
        item["metric"].get("unit", "")
        for item, points in zip(series, values, strict=True)
        if any(math.isfinite(float(v)) and (float(v) > 0 or not counts_runs) for _, v in points)
    }


def write_scenario(sandbox: Sandbox) -> None:
    """Three timers: a backup that succeeds and reports its size, a failing sync, a slow job."""
    script = sandbox.root / "usr/local/bin/backup-job"
    script.write_text(BACKUP_JOB)
    script.chmod(0o755)
    sandbox.write_unit(
        SUCCEEDING,
        "[Service]\nType=oneshot\nDynamicUser=yes\nEnvironment=BORG_REPO=/srv/borg\n"
        "ExecStart=/usr/local/bin/backup-job\n",
    )
    sandbox.write_unit(FAILING, oneshot("exit 3"))
    sandbox.write_unit(SLOW, oneshot("sleep 6"))  # lands in the 15 s bucket
    for service in (SUCCEEDING, FAILING, SLOW):
        timer = service.replace(".service", ".timer")
        # AccuracySec: by default systemd lets a timer fire up to a minute late, to coalesce
        # wake-ups (CI19: 59.8 s after it was started, just past the test's wait).
        sandbox.write_unit(timer, "[Timer]\nOnActiveSec=1s\nOnUnitActiveSec=1h\nAccuracySec=1ms\n")
    sandbox.daemon_reload()


def start_timers(sandbox: Sandbox) -> None:
    for service in (SUCCEEDING, FAILING, SLOW):
        sandbox.systemctl("start", service.replace(".service", ".timer"))


def exporting_daemon(sandbox: Sandbox, workdir: Path, host: str) -> Exporting:
    workdir.mkdir()
    daemon = Exporting(sandbox, workdir, host=host)
    daemon.start()
    return daemon


@pytest.fixture
def alpha(sandbox: Sandbox, tmp_path: Path) -> Iterator[Exporting]:
    """The daemon recording the sandbox as host "alpha", the scenario's job reporting metrics."""
    write_scenario(sandbox)
    daemon = exporting_daemon(sandbox, tmp_path / "alpha", "alpha")
    try:
        daemon.metrics_file("enable", SUCCEEDING)
        yield daemon
    finally:
        daemon.close()


def target(daemon: Exporting) -> str:
    return daemon.metrics_url.split("/")[2]


def run_twice(sandbox: Sandbox, prom: Prometheus) -> None:
    """Each timer's run, then each unit's second run, scraped.

    The second: a new unit's series of runs appears with its first run (at 0 while it runs,
    at 1 if no scrape fell in between), and Prometheus's rate() and increase() see no
    increase in a series' first sample.
    """
    start_timers(sandbox)
    wait_for_runs(prom, 1)
    for service in (SUCCEEDING, FAILING, SLOW):
        sandbox.start(service, wait=False)
    wait_for_runs(prom, 2)


def wait_for_runs(prom: Prometheus, runs: int) -> None:
    """Until Prometheus holds each unit's runs on "alpha" and its timer's next trigger."""
    for unit, result in ((SUCCEEDING, "success"), (SLOW, "success"), (FAILING, "exit-code")):
        selected = f'host="alpha",unit="{unit}"'
        prom.wait_value(f'sum(observer_runs_total{{{selected},result="{result}"}})', runs)
        prom.wait_value(f"count(observer_timer_next_trigger_timestamp_seconds{{{selected}}})", 1)
    prom.wait_value(f'count(job_backup_size_bytes{{unit="{SUCCEEDING}"}})', 1)


def test_every_dashboard_query_shows_the_runs_a_real_prometheus_scraped(
    sandbox: Sandbox, alpha: Exporting, tmp_path: Path
) -> None:
    queries = panel_queries()
    repeated = [q for q in queries if q.panel == "$unit: since last success"]
    assert {(q.panel, q.ref_id) for q in queries} == set(EXPECTED) | {
        (q.panel, q.ref_id) for q in repeated
    }
    with Prometheus(tmp_path / "prometheus", [target(alpha)]) as prom:
        prom.wait_value('up{job="observer"}', 1)
        run_twice(sandbox, prom)
        # The runs ended a few seconds ago: each query must see them within its window.
        for query in queries:
            if query in repeated:
                continue
            shown = shown_units(prom, query, ALL)
            expected = EXPECTED[(query.panel, query.ref_id)]
            assert expected <= shown, f"{query.panel} {query.ref_id}: {query.promql(ALL)}"
        # The stat panel repeats once per unit: each unit that succeeded gets a number.
        for unit in (SUCCEEDING, SLOW):
            for query in repeated:
                assert shown_units(prom, query, ALL | {"unit": unit}) == {""}, unit
        # One that never did gets none: the panel's noValue text says so.
        for query in repeated:
            assert shown_units(prom, query, ALL | {"unit": FAILING}) == set()

        # The variables' choices, as Grafana's label_values() asks Prometheus for them.
        assert prom.api("label/job/values", **{"match[]": "observer_build_info"}) == ["observer"]
        assert prom.api("label/host/values", **{"match[]": 'observer_build_info{job=~".+"}'}) == [
            "alpha"
        ]
        units = prom.api(
            "label/unit/values",
            **{"match[]": 'observer_consecutive_failures{job=~".+",host=~".+"}'},
        )
        assert {SUCCEEDING, FAILING, SLOW} <= set(units)


def firing(prom: Prometheus) -> set[tuple[str, str, str]]:
    """The alerts firing now, as (alert name, host, unit)."""
    return {
        (a["labels"]["alertname"], a["labels"].get("host", ""), a["labels"].get("unit", ""))
        for a in prom.api("alerts")["alerts"]
        if a["state"] == "firing"
    }


def wait_firing(prom: Prometheus, alert: tuple[str, str, str]) -> None:
    wait_for(
        lambda: alert in firing(prom),
        timeout=90,
        what=f"{alert} to fire (firing: {sorted(firing(prom))})",
        check=prom.check,
    )


def test_the_alert_rules_fire_in_a_scenario_that_should_fire_them(
    sandbox: Sandbox, alpha: Exporting, tmp_path: Path
) -> None:
    # A second server whose sync fails too: the failure is shared.
    with Sandbox.boot(timeout=30) as second:
        write_scenario(second)
        beta = exporting_daemon(second, tmp_path / "beta", "beta")
        targets = [target(alpha), target(beta)]
        prom = Prometheus(tmp_path / "prometheus", targets, rule_files=RULE_FILES)
        try:
            start_timers(second)
            run_twice(sandbox, prom)
            wait_firing(prom, ("ObserverUnitFailingOnSeveralHosts", "", FAILING))

            sandbox.start(FAILING)  # the third failure in a row
            wait_firing(prom, ("ObserverUnitFailing", "alpha", FAILING))

            # A unit's metrics file that tries to pass for observer's own metrics.
            (alpha.job_metrics / "rogue.service.prom").write_text("observer_runs_total 999\n")
            wait_firing(prom, ("ObserverCustomMetricsRejected", "alpha", "rogue.service"))

            hold_the_database(alpha, FAILING, sandbox)
            wait_firing(prom, ("ObserverStoreErrors", "alpha", ""))

            # The runs that went well alert nobody; beta's sync failed once, not 3 times.
            quiet = {(SUCCEEDING, "alpha"), (SLOW, "alpha"), (SUCCEEDING, "beta"), (SLOW, "beta")}
            alerts = firing(prom)
            assert not {a for a in alerts if (a[2], a[1]) in quiet}, alerts
            assert ("ObserverUnitFailing", "beta", FAILING) not in alerts
            assert not {a for a in alerts if a[1] == "beta" and a[2] == ""}, alerts
        finally:
            prom.stop()
            beta.close()


def hold_the_database(daemon: Exporting, unit: str, sandbox: Sandbox) -> None:
    """Lock the daemon's database past its busy timeout (10 s) while a run ends."""
    connection = sqlite3.connect(daemon.db, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        sandbox.start(unit)
        wait_for(
            lambda: "retrying" in daemon.log(),
            timeout=30,
            what="the daemon to fail a database write",
        )
    finally:
        connection.execute("ROLLBACK")
        connection.close()
