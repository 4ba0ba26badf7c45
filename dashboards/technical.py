"""Technical dashboard: serving latency, throughput and errors per model and version, resource
utilisation, and the pipeline itself (ingest, dead letters, late events, lag, sinks), with
the alerts timeline whose points link to the panel that explains each alert."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    DATA_SCIENCE_UID,
    EXECUTIVE_UID,
    EXPLAINING_PANEL,
    TECHNICAL_UID,
    Board,
    DataLink,
    PanelId,
    dashboard_link,
    es_target,
    explain_url,
    prom_target,
    row_model_url,
    selector,
    thresholds,
    variables,
)

__all__ = ["alerts_timeline", "build"]

_SEL = selector()
_MODEL = '{model=~"$model"}'
_SINK_REASONS = '{reason=~"(prometheus|elasticsearch|alertmanager)_.+"}'


def _series(title: str, description: str, unit: str, span: int = 12) -> timeseries.Panel:
    return timeseries.Panel().title(title).description(description).unit(unit).height(8).span(span)


def _threshold_line(panel: timeseries.Panel, *steps: tuple[float | None, str]) -> timeseries.Panel:
    return panel.thresholds(thresholds(*steps)).thresholds_style(
        gc.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))


def alerts_timeline() -> timeseries.Panel:
    """Firing alerts per model and rule over time (Elasticsearch); a point links to the panel
    that explains its rule, for its model."""
    panel = (timeseries.Panel().title("Alerts timeline").height(8).span(24)
             .description("Alerts firing per model and rule (ampel-alerts). Click a point: the panel that "
                          "explains the rule, for that model.")
             .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60).stacking(gc.StackingConfig().mode(cm.StackingMode.NORMAL))
             .with_target(es_target("alerts", "state:firing AND model:$model AND version:$version", [es.Count().id("1")],
                                    [es.Terms().id("2").field("model").settings(es.ElasticsearchTermsSettings().size("0")),
                                     es.Terms().id("3").field("rule").settings(es.ElasticsearchTermsSettings().size("0")),
                                     es.DateHistogram().id("4").field("@timestamp")
                                     .settings(es.ElasticsearchDateHistogramSettings().interval("auto"))])))
    for rule in EXPLAINING_PANEL:
        panel = panel.override_by_regexp(f".*\\b{rule}\\b.*", [dm.DynamicConfigValue(
            id_val="links", value=[DataLink(f"Explain {rule}", explain_url(rule)).build()])])
    return panel


def build() -> dm.Dashboard:
    board = Board(TECHNICAL_UID, "ampel: technical",
                  "Serving latency, throughput, errors and resources per model and version; the pipeline's "
                  "own health: ingest, dead letters, late events, lag, sinks.", ["technical"])
    board.row("Serving")
    latency = _threshold_line(
        _series("Latency percentiles", "p50, p90, p95, p99 and max serving latency per window; lines at the "
                                       "100 ms target and the 1 s critical alert.", "s", 24),
        (None, "green"), (0.1, "orange"), (1, "red"))
    for ref, quantile in zip("ABCDE", ("p50", "p90", "p95", "p99", "max")):
        latency = latency.with_target(prom_target(f"ampel_latency_{quantile}_seconds{_SEL}",
                                                  f"{{{{model}}}} {{{{version}}}} {quantile}", ref))
    board.panel(latency, PanelId.LATENCY)
    board.panel(_series("Throughput", "Predictions per second per window.", "reqps")
                .with_target(prom_target(f"sum by (model, version) (ampel_throughput_per_second{_SEL})",
                                         "{{model}} {{version}}")), PanelId.THROUGHPUT)
    board.panel(_threshold_line(_series("Error rate by model and version", "Failed / all predictions per window; "
                                        "line at the 1 % critical alert.", "percentunit"),
                                (None, "green"), (0.01, "red"))
                .with_target(prom_target(f"ampel_error_ratio{_SEL}", "{{model}} {{version}}")), PanelId.ERROR_RATE)
    resources = _threshold_line(_series("Resource utilisation", "Mean and largest CPU, memory and GPU utilisation "
                                        "of the serving hosts per window; line at the 80 % warning.", "percentunit", 24),
                                (None, "green"), (0.8, "orange")).max(1)
    for ref, (kind, stat) in zip("ABCDEF", [(k, s) for k in ("cpu", "memory", "gpu") for s in ("mean", "max")]):
        resources = resources.with_target(prom_target(f"ampel_resource_{kind}_{stat}_ratio{_SEL}",
                                                      f"{{{{model}}}} {{{{version}}}} {kind} {stat}", ref))
    board.panel(resources, PanelId.RESOURCES)

    board.row("Alerts")
    board.panel(alerts_timeline())
    board.panel(
        table.Panel().title("Alert log").height(8).span(24)
        .description("Every alert state change of the selected models (ampel-alerts).")
        .data_links([DataLink("Data-science view of ${__data.fields.model}", row_model_url(DATA_SCIENCE_UID))])
        .with_target(es_target("alerts", "model:$model AND version:$version",
                               [es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size("500"))])))

    board.row("Pipeline")
    board.panel(_series("Events ingested", "Prediction events accepted per second (pipeline counter).", "reqps")
                .with_target(prom_target(f"sum by (model) (rate(ampel_events_total{_MODEL}[$__rate_interval]))",
                                         "{{model}}")))
    board.panel(_series("Pipeline lag", "Now minus the end of the newest window written: how far the results "
                                        "trail the wall clock (event time).", "s")
                .with_target(prom_target(f"time() - max by (model, version) (timestamp(ampel_predictions{_SEL}))",
                                         "{{model}} {{version}}")))
    board.panel(_series("Dead letters by reason", "Records rejected to the dead-letter output per second.", "cps")
                .with_target(prom_target("sum by (reason) (rate(ampel_dead_letter_records_total[$__rate_interval]))",
                                         "{{reason}}")))
    board.panel(_series("Late events", "Events read behind the watermark (their slice closed), within allowed lateness.", "cps")
                .with_target(prom_target(f"sum by (model) (rate(ampel_late_events_total{_MODEL}[$__rate_interval]))",
                                         "{{model}}")))
    board.panel(_series("Windows emitted", "Window results emitted per second.", "cps")
                .with_target(prom_target(f"sum by (model) (rate(ampel_windows_emitted_total{_MODEL}[$__rate_interval]))",
                                         "{{model}}")))
    board.panel(_series("Sink deliveries", "Samples, documents and alerts delivered per second, per sink.", "cps")
                .with_target(prom_target("sum by (sink) (rate(ampel_sink_writes_total[$__rate_interval]))", "{{sink}}")))
    board.panel(_series("Sink errors", "Requests retried after a transient failure, and records a sink could not "
                                       "deliver (dead-lettered), per second.", "cps", 24)
                .with_target(prom_target("sum by (sink) (rate(ampel_sink_retries_total[$__rate_interval]))",
                                         "{{sink}} retries", "A"))
                .with_target(prom_target(
                    f"sum by (reason) (rate(ampel_dead_letter_records_total{_SINK_REASONS}[$__rate_interval]))",
                    "{{reason}}", "B")))
    board.panel(
        table.Panel().title("Recent dead letters").height(8).span(24)
        .description("The newest rejected records with their reason, source and detail (ampel-dead_letters).")
        .with_target(es_target("dead_letters", "*",
                               [es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size("200"))])))
    return board.build(variables(), [dashboard_link("Executive", EXECUTIVE_UID),
                                     dashboard_link("Data science", DATA_SCIENCE_UID)])
