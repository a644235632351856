"""Builds observer-dashboard.json with Grafana's own SDK (grafana-foundation-sdk).

Run `python packaging/grafana/build_dashboard.py` after changing a panel: it rewrites the
JSON beside it. tests/unit/test_grafana_dashboard.py fails while the two differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import prometheus as prometheus_models

DASHBOARD_JSON = Path(__file__).with_name("observer-dashboard.json")

DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every query of every panel narrows to the variables the viewer picked.
SELECTED = 'job=~"$job",host=~"$host",unit=~"$unit"'


def instant_table(ref_id: str, expr: str) -> prometheus.Dataquery:
    """A query whose newest value fills one column of a table."""
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(expr)
        .instant()
        .format(prometheus_models.PromQueryFormat.TABLE)
    )


def over_time(ref_id: str, expr: str, legend: str) -> prometheus.Dataquery:
    """A query drawn over the dashboard's time range."""
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(expr)
        .range()
        .format(prometheus_models.PromQueryFormat.TIME_SERIES)
        .legend_format(legend)
    )


def prop(property_id: str, value: object) -> dashboard.DynamicConfigValue:
    return dashboard.DynamicConfigValue(id_val=property_id, value=value)


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def merged_columns(
    hidden: list[str], order: list[str], names: dict[str, str]
) -> list[dashboard.DataTransformerConfig]:
    """Merge a table's queries into one row per series, then hide, order and name columns."""
    organize = {
        "excludeByName": dict.fromkeys(hidden, True),
        "indexByName": {column: index for index, column in enumerate(order)},
        "renameByName": names,
    }
    return [
        dashboard.DataTransformerConfig(id_val="merge", options={}),
        dashboard.DataTransformerConfig(id_val="organize", options=organize),
    ]


def sorted_by(column: str, descending: bool) -> common_builders.TableSortByFieldState:
    return common_builders.TableSortByFieldState().display_name(column).desc(descending)


def units_table() -> table.Panel:
    """One row per unit: since its last success, last result, failures in a row, next trigger."""
    panel = (
        table.Panel()
        .id(1)
        .title("Units")
        .description(
            "One row per unit: time since its last success, its last result, failures in a"
            " row, whether it runs now, and when its timer fires next."
        )
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(x=0, y=0, w=24, h=9))
        .with_target(instant_table("A", "time() - max by (host, unit) "
                                   f"(observer_last_success_timestamp_seconds{{{SELECTED}}})"))
        .with_target(instant_table("B", "max by (host, unit, result) "
                                   f"(observer_last_run_info{{{SELECTED}}})"))
        .with_target(instant_table("C", "max by (host, unit) "
                                   f"(observer_consecutive_failures{{{SELECTED}}})"))
        .with_target(instant_table("D", f"max by (host, unit) (observer_running{{{SELECTED}}})"))
        .with_target(instant_table("E", "min by (host, unit) "
                                   f"(observer_timer_next_trigger_timestamp_seconds{{{SELECTED}}})"
                                   " * 1000"))
        .transformations(merged_columns(
            hidden=["Time", "Value #B"],
            order=["host", "unit", "Value #A", "result", "Value #C", "Value #D", "Value #E"],
            names={
                "Value #A": "Since last success",
                "result": "Last result",
                "Value #C": "Failed in a row",
                "Value #D": "Running",
                "Value #E": "Next trigger",
            },
        ))
        .align(common.FieldTextAlignment.AUTO)
        .show_header(True)
        .sort_by([sorted_by("Failed in a row", descending=True)])
        .override_by_name("Since last success", [prop("unit", "s"), prop("decimals", 0)])
        .override_by_name("Next trigger", [prop("unit", "dateTimeAsLocal")])
        .override_by_name("Failed in a row", [
            prop("custom.cellOptions", common.TableColoredBackgroundCellOptions()),
            prop("thresholds", thresholds((None, "green"), (1, "orange"), (3, "red")).build()),
        ])
        .override_by_name("Last result", [
            prop("custom.cellOptions", common.TableColorTextCellOptions()),
            prop("mappings", [
                dashboard.ValueMap(
                    options={"success": dashboard.ValueMappingResult(color="green", index=0)}
                ),
                dashboard.RegexMap(options=dashboard.DashboardRegexMapOptions(
                    pattern=".+", result=dashboard.ValueMappingResult(color="red", index=1)
                )),
            ]),
        ])
        .override_by_name("Running", [
            prop("mappings", [dashboard.ValueMap(options={
                "0": dashboard.ValueMappingResult(text="no", index=0),
                "1": dashboard.ValueMappingResult(text="yes", color="blue", index=1),
            })]),
        ])
    )  # fmt: skip
    return panel


def since_last_success() -> stat.Panel:
    """One tile per selected unit: time since its newest success, red after two days."""
    return (
        stat.Panel()
        .id(2)
        .title("$unit: since last success")
        .description("Time since the unit's newest successful run ended.")
        .datasource(DATASOURCE)
        .repeat("unit")
        .repeat_direction("h")
        .max_per_row(6)
        .grid_pos(dashboard.GridPos(x=0, y=9, w=4, h=4))
        .with_target(over_time(
            "A",
            'time() - max(observer_last_success_timestamp_seconds{job=~"$job",host=~"$host",'
            'unit="$unit"})',
            "{{unit}}",
        ))
        .unit("s")
        .decimals(0)
        # A unit that never succeeded has no such series: say so rather than "No data".
        .no_value("no success recorded")
        .thresholds(thresholds((None, "green"), (86400, "orange"), (172800, "red")))
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
        )
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE)
    )  # fmt: skip


def run_duration() -> timeseries.Panel:
    """The newest run's duration per unit, and the 95th percentile of runs in each step."""
    return (
        timeseries.Panel()
        .id(3)
        .title("Run duration")
        .description(
            "How long each unit's newest finished run took (steps when a run ends), and the"
            " 95th percentile of runs that ended in the interval."
        )
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(x=0, y=13, w=12, h=9))
        .with_target(over_time(
            "A",
            f"max by (host, unit) (observer_last_run_duration_seconds{{{SELECTED}}})",
            "{{unit}} last run",
        ))
        .with_target(over_time(
            "B",
            "histogram_quantile(0.95, sum by (host, unit, le) (rate("
            f"observer_run_duration_seconds_bucket{{{SELECTED}}}[$__rate_interval])))",
            "{{unit}} p95",
        ))
        .unit("s")
        .draw_style(common.GraphDrawStyle.LINE)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .point_size(5)
        .show_points(common.VisibilityMode.ALWAYS)
        .legend(legend_table(["lastNotNull", "max"]))
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )  # fmt: skip


def legend_table(calcs: list[str]) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(calcs)
    )


def runs_by_result() -> timeseries.Panel:
    """Bars of runs that ended in each interval, stacked by result, successes green."""
    return (
        timeseries.Panel()
        .id(4)
        .title("Runs by result")
        .description("Runs that ended in each interval, by systemd's result.")
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(x=12, y=13, w=12, h=9))
        .interval("1m")
        .with_target(over_time(
            "A",
            "sum by (unit, result) (increase(observer_runs_total"
            f"{{{SELECTED}}}[$__interval]))",
            "{{unit}} {{result}}",
        ))
        .unit("short")
        .decimals(0)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
        .override_by_regexp(".* success", [
            prop("color", dashboard.FieldColor(
                mode=dashboard.FieldColorModeId.FIXED, fixed_color="green"
            )),
        ])
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )  # fmt: skip


def failures_table() -> table.Panel:
    """Units whose newest run failed: result, exit status or signal, when, how often in a row."""
    return (
        table.Panel()
        .id(5)
        .title("Failures")
        .description(
            "Units whose newest finished run failed: how, when, and how many times in a row."
        )
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(x=0, y=22, w=12, h=8))
        .with_target(instant_table(
            "A",
            "max by (host, unit, result, signal) (observer_last_run_info{"
            f'{SELECTED},result!="success"}})',
        ))
        .with_target(instant_table(
            "B",
            f"max by (host, unit) (observer_last_failure_timestamp_seconds{{{SELECTED}}}) * 1000",
        ))
        .with_target(instant_table(
            "C", f"max by (host, unit) (observer_last_run_exit_status{{{SELECTED}}})"
        ))
        .with_target(instant_table(
            "D", f"max by (host, unit) (observer_consecutive_failures{{{SELECTED}}} > 0)"
        ))
        .transformations([
            dashboard.DataTransformerConfig(id_val="merge", options={}),
            # Only units failing now: a row whose failures in a row are > 0.
            dashboard.DataTransformerConfig(id_val="filterByValue", options={
                "type": "include",
                "match": "any",
                "filters": [{
                    "fieldName": "Value #D",
                    "config": {"id": "greater", "options": {"value": 0}},
                }],
            }),
            merged_columns(
                hidden=["Time", "Value #A"],
                order=["host", "unit", "result", "Value #C", "signal", "Value #B", "Value #D"],
                names={
                    "result": "Result",
                    "Value #C": "Exit status",
                    "signal": "Signal",
                    "Value #B": "Failed at",
                    "Value #D": "Failed in a row",
                },
            )[1],
        ])
        .align(common.FieldTextAlignment.AUTO)
        .show_header(True)
        .sort_by([sorted_by("Failed at", descending=True)])
        .override_by_name("Failed at", [prop("unit", "dateTimeAsLocal")])
    )  # fmt: skip


def timers_table() -> table.Panel:
    """Each timer's last and next trigger."""
    return (
        table.Panel()
        .id(6)
        .title("Timers")
        .description("When each timer fired last and fires next.")
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(x=12, y=22, w=12, h=8))
        .with_target(instant_table(
            "A",
            "max by (host, unit, timer) (observer_timer_last_trigger_timestamp_seconds"
            f"{{{SELECTED}}}) * 1000",
        ))
        .with_target(instant_table(
            "B",
            "max by (host, unit, timer) (observer_timer_next_trigger_timestamp_seconds"
            f"{{{SELECTED}}}) * 1000",
        ))
        .transformations(merged_columns(
            hidden=["Time"],
            order=["host", "timer", "unit", "Value #A", "Value #B"],
            names={"Value #A": "Last trigger", "Value #B": "Next trigger"},
        ))
        .unit("dateTimeAsLocal")
        .align(common.FieldTextAlignment.AUTO)
        .show_header(True)
        .sort_by([sorted_by("Next trigger", descending=False)])
    )  # fmt: skip


def job_metrics() -> timeseries.Panel:
    """Whatever the units wrote to $JOB_METRICS_FILE."""
    return (
        timeseries.Panel()
        .id(7)
        .title("Metrics the jobs report")
        .description(
            "What units wrote to $JOB_METRICS_FILE (any metric with a unit label that is not"
            " observer's own)."
        )
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(x=0, y=30, w=24, h=9))
        .with_target(over_time(
            "A",
            '{job=~"$job",unit=~"$unit",__name__!~"observer_.*"}',
            "{{__name__}} {{unit}}",
        ))
        .draw_style(common.GraphDrawStyle.LINE)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .legend(legend_table(["lastNotNull"]))
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )  # fmt: skip


def picker(name: str, label: str, query: str) -> dashboard_builders.QueryVariable:
    """A multi-value variable listing a label's values, "All" by default."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-query"})
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(dashboard.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def observer_dashboard() -> dashboard.Dashboard:
    """The dashboard: variables, then the panels top to bottom."""
    builder = (
        dashboard_builders.Dashboard("observer: systemd jobs")
        .uid("observer-jobs")
        .description(
            "Every systemd service and timer run recorded by observer: last success,"
            " results, durations, failures, timers and the metrics jobs report."
        )
        .tags(["observer", "systemd"])
        .timezone("browser")
        .editable()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .version(1)
        .time("now-24h", "now")
        .with_variable(
            dashboard_builders.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
        )
        .with_variable(picker("job", "Job", "label_values(observer_build_info, job)"))
        .with_variable(picker(
            "host", "Host", 'label_values(observer_build_info{job=~"$job"}, host)'
        ))
        .with_variable(picker(
            "unit", "Unit",
            'label_values(observer_consecutive_failures{job=~"$job",host=~"$host"}, unit)',
        ))
    )  # fmt: skip
    for panel in (
        units_table(),
        since_last_success(),
        run_duration(),
        runs_by_result(),
        failures_table(),
        timers_table(),
        job_metrics(),
    ):
        builder = builder.with_panel(panel)
    return builder.build()


def dashboard_json() -> str:
    """The dashboard as Grafana imports it."""
    return json.dumps(observer_dashboard(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> int:
    DASHBOARD_JSON.write_text(dashboard_json())
    print(f"wrote {DASHBOARD_JSON}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
