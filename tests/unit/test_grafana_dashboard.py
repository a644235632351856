"""The Grafana dashboard is built with Grafana's own SDK and loads back into its typed models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus, stat, table, timeseries

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "packaging" / "grafana" / "build_dashboard.py"
DASHBOARD = ROOT / "packaging" / "grafana" / "observer-dashboard.json"


def builder() -> ModuleType:
    """packaging/grafana/build_dashboard.py (packaging/ is no package: PyPI's owns the name)."""
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILDER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboard_is_what_the_builder_makes_now() -> None:
    assert DASHBOARD.read_text() == builder().dashboard_json(), (
        "observer-dashboard.json is out of date: run python packaging/grafana/build_dashboard.py"
    )


def loaded_dashboard() -> dashboard_models.Dashboard:
    """The committed JSON in the SDK's models, panel options and queries typed by plugin."""
    plugins.register_default_plugins()
    return dashboard_models.Dashboard.from_json(json.loads(DASHBOARD.read_text()))


def test_the_committed_dashboard_loads_into_grafanas_typed_models_unchanged() -> None:
    committed = json.loads(DASHBOARD.read_text())
    assert json.loads(json.dumps(loaded_dashboard(), cls=JSONEncoder)) == committed


def test_every_panel_has_its_visualizations_options_and_prometheus_queries() -> None:
    panels = loaded_dashboard().panels
    assert panels is not None
    options = {"table": table.Options, "stat": stat.Options, "timeseries": timeseries.Options}
    assert [(panel.type_val, panel.title) for panel in panels] == [
        ("table", "Units"),
        ("stat", "$unit: since last success"),
        ("timeseries", "Run duration"),
        ("timeseries", "Runs by result"),
        ("table", "Failures"),
        ("table", "Timers"),
        ("timeseries", "Metrics the jobs report"),
    ]
    for panel in panels:
        assert isinstance(panel, dashboard_models.Panel)
        assert isinstance(panel.options, options[panel.type_val]), panel.title
        assert panel.targets, panel.title
        for query in panel.targets:
            assert isinstance(query, prometheus.Dataquery), panel.title
            assert query.expr, panel.title
            assert query.datasource is not None
            assert query.datasource.to_json() == {"type": "prometheus", "uid": "${datasource}"}
