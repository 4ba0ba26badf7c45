"""Executive dashboard: the operational KPIs against their targets, models in alert, drift,
cost and compliance, at a glance.

Targets (docs/dashboards.md): availability 99.9 %, p95 latency 100 ms, 1000 predictions/s
supported, error budget 0.1 % of predictions. The cost per 1000 predictions divides the
``unit_cost`` variable (cost of serving one model version for an hour) by the predictions
served in that hour.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    DATA_SCIENCE_UID,
    EXECUTIVE_UID,
    TECHNICAL_UID,
    Board,
    DataLink,
    dashboard_link,
    es_target,
    prom_target,
    row_model_url,
    selector,
    thresholds,
    variables,
)

__all__ = ["AVAILABILITY_TARGET", "ERROR_BUDGET", "LATENCY_TARGET_SECONDS", "THROUGHPUT_TARGET", "UNIT_COST", "build"]

AVAILABILITY_TARGET = 0.999
LATENCY_TARGET_SECONDS = 0.1
THROUGHPUT_TARGET = 1000.0
#: The share of predictions that may fail.
ERROR_BUDGET = 0.001
#: The default of the ``unit_cost`` variable: cost of serving one model version for one hour.
UNIT_COST = "1.0"

_SEL = selector()
_ERRORS_IN_RANGE = f"sum(sum_over_time(ampel_prediction_errors{_SEL}[$__range]))"
_PREDICTIONS_IN_RANGE = f"sum(sum_over_time(ampel_predictions{_SEL}[$__range]))"


def _stat(title: str, description: str, unit: str) -> stat.Panel:
    return (stat.Panel().title(title).description(description).unit(unit).height(5).span(6)
            .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
            .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def build() -> dm.Dashboard:
    board = Board(EXECUTIVE_UID, "ampel: executive",
                  "Service levels against their targets, models in alert, drift, cost and compliance.", ["executive"])
    board.row("Service levels")
    board.panel(
        _stat("Availability (target 99.9 %)",
              "Share of predictions served without error over the time range.", "percentunit")
        .decimals(3).thresholds(thresholds((None, "red"), (AVAILABILITY_TARGET, "green")))
        .with_target(prom_target(f"1 - {_ERRORS_IN_RANGE} / {_PREDICTIONS_IN_RANGE}", instant=True)))
    board.panel(
        _stat("p95 latency (target 100 ms)", "Largest p95 serving latency of the selected models, newest window.", "s")
        .thresholds(thresholds((None, "green"), (LATENCY_TARGET_SECONDS, "red")))
        .with_target(prom_target(f"max(ampel_latency_p95_seconds{_SEL})", "p95")))
    board.panel(
        bargauge.Panel().title("Throughput (supported: 1000 predictions/s)").height(5).span(6)
        .description("Predictions per second of the selected models, newest window, against the supported load.")
        .unit("reqps").min(0).max(THROUGHPUT_TARGET)
        .thresholds(thresholds((None, "green"), (0.8 * THROUGHPUT_TARGET, "orange"), (THROUGHPUT_TARGET, "red")))
        .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(prom_target(f"sum(ampel_throughput_per_second{_SEL})", "all models")))
    board.panel(
        _stat("Error budget left (budget 0.1 %)",
              "1 - (failed share over the time range) / 0.1 %: below 0 the budget is spent.", "percentunit")
        .thresholds(thresholds((None, "red"), (0, "orange"), (0.5, "green")))
        .with_target(prom_target(f"1 - ({_ERRORS_IN_RANGE} / {_PREDICTIONS_IN_RANGE}) / {ERROR_BUDGET}", instant=True)))
    board.panel(
        timeseries.Panel().title("Error budget burn rate").height(8).span(12)
        .description("Failed share of each window / 0.1 %: above 1 the budget burns faster than it is earned.")
        .unit("none").thresholds(thresholds((None, "green"), (1, "red")))
        .thresholds_style(gc.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
        .with_target(prom_target(
            f"sum by (model) (ampel_prediction_errors{_SEL}) / sum by (model) (ampel_predictions{_SEL}) / {ERROR_BUDGET}",
            "{{model}}")))
    board.panel(
        timeseries.Panel().title("Cost per 1000 predictions").height(8).span(12)
        .description("unit_cost (per serving hour of a model version) / thousands of predictions served per hour.")
        .unit("currencyUSD").decimals(4)
        .with_target(prom_target(
            f"1000 * $unit_cost / (3600 * sum by (model, version) (ampel_throughput_per_second{_SEL}))",
            "{{model}} {{version}}")))
    board.row("Models")
    board.panel(
        _stat("Models alerted", "Models with a firing critical or warning alert in the time range.", "none")
        .thresholds(thresholds((None, "green"), (1, "red")))
        .no_value("0").reduce_options(gc.ReduceDataOptions().calcs(["count"]).values(False).fields("Count"))
        .data_links([DataLink("Alerts on the technical dashboard",
                              f"/d/{TECHNICAL_UID}/ampel-technical?" + "${__all_variables}&${__url_time_range}")])
        .with_target(es_target("alerts", "state:firing AND severity:(critical OR warning) AND model:$model AND version:$version",
                               [es.Count().id("1")],
                               [es.Terms().id("2").field("model").settings(es.ElasticsearchTermsSettings().size("0"))])))
    board.panel(
        statetimeline.Panel().title("Drift status per model").height(5).span(18)
        .description("1 while any feature of the model is drifted (drift policy), per window.")
        .mappings([dm.ValueMap(options={"0": dm.ValueMappingResult(text="no drift", color="green"),
                                         "1": dm.ValueMappingResult(text="drifted", color="orange")})])
        .thresholds(thresholds((None, "green"), (1, "orange")))
        .with_target(prom_target(f"max by (model) (ampel_feature_drifted{_SEL})", "{{model}}")))
    board.panel(
        table.Panel().title("Alerts").height(8).span(24)
        .description("Every alert state change (firing, resolved) of the selected models; the links open the "
                     "technical or data-science view of the alert's model.")
        .data_links([
            DataLink("Technical view of ${__data.fields.model}", row_model_url(TECHNICAL_UID)),
            DataLink("Data-science view of ${__data.fields.model}", row_model_url(DATA_SCIENCE_UID)),
        ])
        .with_target(es_target("alerts", "model:$model AND version:$version",
                               [es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size("500"))])))
    board.row("Compliance")
    board.panel(
        _stat("Decision log", "Predictions recorded in the decision log (ampel-decisions) in the time range: "
                              "0 means the audit trail is off.", "none")
        .mappings([dm.RangeMap(options=dm.DashboardRangeMapOptions(
            from_val=0, to=0, result=dm.ValueMappingResult(text="OFF", color="red")))])
        .thresholds(thresholds((None, "red"), (1, "green")))
        .with_target(es_target("decisions", "model:$model AND version:$version", [es.Count().id("1")],
                               [es.DateHistogram().id("2").field("@timestamp")]))
        .reduce_options(gc.ReduceDataOptions().calcs(["sum"]).values(False)))
    board.panel(
        _stat("Bias checks (four-fifths rule)",
              "Smallest disparate-impact ratio over the sensitive attributes: passing at 0.8 and above.", "percentunit")
        .thresholds(thresholds((None, "red"), (0.8, "green")))
        .with_target(prom_target(f"min by (model) (ampel_bias_disparate_impact_ratio{_SEL})", "{{model}}")))
    return board.build(variables(cost=UNIT_COST), [dashboard_link("Technical", TECHNICAL_UID),
                                                   dashboard_link("Data science", DATA_SCIENCE_UID)])
