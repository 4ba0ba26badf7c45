"""Data-science dashboard: drift per feature as heatmaps over time, prediction and confidence
drift, quality once labels arrive (with the labelled fraction), bias per subgroup, feature
importance trends and the A/B comparison of versions against their baseline."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import heatmap, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm

from dashboards.common import (
    DATA_SCIENCE_UID,
    EXECUTIVE_UID,
    TECHNICAL_UID,
    Board,
    PanelId,
    dashboard_link,
    es_target,
    prom_target,
    selector,
    thresholds,
    variables,
)
from dashboards.technical import alerts_timeline

__all__ = ["build"]

_SEL = selector()
_MODEL = '{model=~"$model"}'


def _series(title: str, description: str, unit: str, span: int = 12) -> timeseries.Panel:
    return timeseries.Panel().title(title).description(description).unit(unit).height(8).span(span)


def _line(panel: timeseries.Panel, *steps: tuple[float | None, str]) -> timeseries.Panel:
    return panel.thresholds(thresholds(*steps)).thresholds_style(
        gc.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))


def _heatmap(title: str, description: str, metric: str, steps: tuple[tuple[float | None, str], ...]) -> heatmap.Panel:
    """Features as rows, windows as columns, the statistic as the colour."""
    return (heatmap.Panel().title(title).description(description).height(9).span(8)
            .calculate(False).y_axis(heatmap.YAxisConfig().unit("short"))
            .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges")
                   .scale(hm.HeatmapColorScale.LINEAR).exponent(0.5).steps(64).fill("dark-orange").reverse(False))
            .cell_values(heatmap.CellValues().unit("none").decimals(3))
            .thresholds(thresholds(*steps))
            .with_target(prom_target(f"max by (model, feature) ({metric}{_SEL})", "{{model}} {{feature}}")
                         .format("time_series")))


def build() -> dm.Dashboard:
    board = Board(DATA_SCIENCE_UID, "ampel: data science",
                  "Drift per feature, prediction and confidence drift, quality once labels arrive, bias per "
                  "subgroup, feature importance and A/B comparison of versions.", ["data-science"])
    board.row("Data drift")
    board.panel(_heatmap("PSI per feature", "Population stability index of each feature against the reference "
                         "per window; 0.2 and above is drift (data_drift alert).", "ampel_feature_psi",
                         ((None, "green"), (0.2, "red"))), PanelId.PSI_HEATMAP)
    board.panel(_heatmap("Jensen-Shannon per feature", "Jensen-Shannon distance (base 2) of each feature against "
                         "the reference; above 0.1 is feature drift (info alert).", "ampel_feature_js",
                         ((None, "green"), (0.1, "red"))), PanelId.JS_HEATMAP)
    board.panel(_heatmap("KS statistic per feature", "Kolmogorov-Smirnov D of each numeric feature against the "
                         "reference.", "ampel_feature_ks_statistic", ((None, "green"),)), PanelId.KS_HEATMAP)
    board.panel(_series("Share of drifted features", "Drifted features / features of the model, per window.",
                        "percentunit").max(1)
                .with_target(prom_target(f"ampel_drifted_features_ratio{_SEL}", "{{model}} {{version}}")))
    board.panel(_line(_series("Prediction and confidence drift", "PSI and Jensen-Shannon of the distributions of "
                              "predictions and confidences against the reference.", "none"),
                      (None, "green"), (0.2, "red"))
                .with_target(prom_target(f"ampel_prediction_psi{_SEL}", "{{model}} {{version}} prediction PSI", "A"))
                .with_target(prom_target(f"ampel_prediction_js{_SEL}", "{{model}} {{version}} prediction JS", "B"))
                .with_target(prom_target(f"ampel_confidence_psi{_SEL}", "{{model}} {{version}} confidence PSI", "C"))
                .with_target(prom_target(f"ampel_confidence_js{_SEL}", "{{model}} {{version}} confidence JS", "D")))
    board.panel(_series("Confidence", "Mean and 10th percentile of the prediction confidence, and the share "
                        "below the configured threshold.", "percentunit", 24).max(1)
                .with_target(prom_target(f"ampel_confidence_mean{_SEL}", "{{model}} {{version}} mean", "A"))
                .with_target(prom_target(f"ampel_confidence_p10{_SEL}", "{{model}} {{version}} p10", "B"))
                .with_target(prom_target(f"ampel_confidence_below_threshold_ratio{_SEL}",
                                         "{{model}} {{version}} below threshold", "C")))

    board.row("Quality (once labels arrive)")
    board.panel(_series("Accuracy and F1 with the labelled fraction", "Accuracy and F1 of the labelled predictions "
                        "per window, and the share of the window's predictions labelled so far.", "percentunit", 24)
                .max(1)
                .with_target(prom_target(f"ampel_accuracy_ratio{_SEL}", "{{model}} {{version}} accuracy", "A"))
                .with_target(prom_target(f"ampel_f1_ratio{_SEL}", "{{model}} {{version}} F1", "B"))
                .with_target(prom_target(f"ampel_labelled_ratio{_SEL}", "{{model}} {{version}} labelled", "C")),
                PanelId.QUALITY)
    board.panel(_line(_series("Accuracy drop against the reference", "(reference - accuracy) / reference; lines "
                              "at the 5 % warning and 10 % critical alerts.", "percentunit"),
                      (None, "green"), (0.05, "orange"), (0.1, "red"))
                .with_target(prom_target(f"ampel_accuracy_drop_ratio{_SEL}", "{{model}} {{version}}")))
    board.panel(_series("Precision and recall", "Binary: of the positive class; else macro-averaged.", "percentunit")
                .max(1)
                .with_target(prom_target(f"ampel_precision_ratio{_SEL}", "{{model}} {{version}} precision", "A"))
                .with_target(prom_target(f"ampel_recall_ratio{_SEL}", "{{model}} {{version}} recall", "B")))
    board.panel(_series("Brier score and log loss", "Of the labelled binary predictions with a confidence.", "none")
                .with_target(prom_target(f"ampel_brier_score{_SEL}", "{{model}} {{version}} Brier", "A"))
                .with_target(prom_target(f"ampel_log_loss{_SEL}", "{{model}} {{version}} log loss", "B")))
    board.panel(_series("Regression error: MAE, RMSE, MAPE", "Of the labelled predictions of regression models.",
                        "none")
                .with_target(prom_target(f"ampel_mae{_SEL}", "{{model}} {{version}} MAE", "A"))
                .with_target(prom_target(f"ampel_rmse{_SEL}", "{{model}} {{version}} RMSE", "B"))
                .with_target(prom_target(f"ampel_mape_ratio{_SEL}", "{{model}} {{version}} MAPE", "C")))
    board.panel(_series("Labels", "Labelled predictions per window; labels joined and predictions whose label "
                        "never came, per second (pipeline counters).", "short")
                .with_target(prom_target(f"ampel_labelled_predictions{_SEL}", "{{model}} {{version}} labelled", "A"))
                .with_target(prom_target(f"sum by (model) (rate(ampel_labelled_predictions_total{_MODEL}[$__rate_interval]))",
                                         "{{model}} joined/s", "B"))
                .with_target(prom_target(
                    f"sum by (model) (rate(ampel_unlabelled_predictions_expired_total{_MODEL}[$__rate_interval]))",
                    "{{model}} expired/s", "C")))

    board.row("Bias")
    board.panel(_line(_series("Disparity per sensitive attribute", "Demographic-parity and equal-opportunity "
                              "differences, and the disparate-impact ratio (four-fifths rule: line at 0.8).",
                              "none", 24),
                      (None, "red"), (0.8, "green"))
                .with_target(prom_target(f"ampel_bias_demographic_parity_difference{_SEL}",
                                         "{{model}} {{version}} {{attribute}} parity difference", "A"))
                .with_target(prom_target(f"ampel_bias_equal_opportunity_difference{_SEL}",
                                         "{{model}} {{version}} {{attribute}} opportunity difference", "B"))
                .with_target(prom_target(f"ampel_bias_disparate_impact_ratio{_SEL}",
                                         "{{model}} {{version}} {{attribute}} disparate impact", "C")),
                PanelId.BIAS)
    board.panel(_series("Subgroup accuracy and positive rate", "Per subgroup of each sensitive attribute.",
                        "percentunit").max(1)
                .with_target(prom_target(f"ampel_subgroup_accuracy_ratio{_SEL}",
                                         "{{model}} {{attribute}}={{subgroup}} accuracy", "A"))
                .with_target(prom_target(f"ampel_subgroup_positive_ratio{_SEL}",
                                         "{{model}} {{attribute}}={{subgroup}} positive", "B")))
    board.panel(_series("Subgroup TPR and FPR", "True- and false-positive rates per subgroup.", "percentunit").max(1)
                .with_target(prom_target(f"ampel_subgroup_tpr_ratio{_SEL}", "{{model}} {{attribute}}={{subgroup}} TPR", "A"))
                .with_target(prom_target(f"ampel_subgroup_fpr_ratio{_SEL}", "{{model}} {{attribute}}={{subgroup}} FPR", "B")))
    board.panel(_series("Labelled predictions per subgroup", "How many labelled predictions each subgroup's "
                        "metrics rest on.", "short", 24)
                .with_target(prom_target(f"ampel_subgroup_labelled_predictions{_SEL}",
                                         "{{model}} {{version}} {{attribute}}={{subgroup}}")))

    board.row("Feature importance")
    board.panel(_series("Feature importance", "Mean absolute attribution per feature and window.", "none")
                .with_target(prom_target(f"ampel_feature_importance{_SEL}", "{{model}} {{feature}}")),
                PanelId.IMPORTANCE)
    board.panel(_series("Feature importance rank", "Rank of each feature by mean absolute attribution "
                        "(1 = most important).", "none")
                .with_target(prom_target(f"ampel_feature_importance_rank{_SEL}", "{{model}} {{feature}}")))

    board.row("A/B comparison (each version against its baseline)")
    board.panel(_series("Error-rate difference", "Error rate of the version minus its baseline's, and the "
                        "p-value of the two-proportion z-test.", "percentunit")
                .with_target(prom_target(f"ampel_ab_error_ratio_difference{_SEL}",
                                         "{{model}} {{version}} - {{baseline}}", "A"))
                .with_target(prom_target(f"ampel_ab_error_ratio_pvalue{_SEL}",
                                         "{{model}} {{version}} vs {{baseline}} p-value", "B")))
    board.panel(_series("p95 latency difference", "p95 latency of the version minus its baseline's.", "s")
                .with_target(prom_target(f"ampel_ab_latency_p95_difference_seconds{_SEL}",
                                         "{{model}} {{version}} - {{baseline}}")))
    board.panel(_series("Accuracy difference", "Accuracy of the version minus its baseline's, and the p-value of "
                        "the two-proportion z-test.", "percentunit", 24)
                .with_target(prom_target(f"ampel_ab_accuracy_difference{_SEL}", "{{model}} {{version}} - {{baseline}}", "A"))
                .with_target(prom_target(f"ampel_ab_accuracy_pvalue{_SEL}",
                                         "{{model}} {{version}} vs {{baseline}} p-value", "B")))

    board.row("Alerts and quality records")
    board.panel(alerts_timeline())
    board.panel(
        table.Panel().title("Quality windows").height(8).span(24)
        .description("The quality record of each window (ampel-quality): labelled share, accuracy, bias.")
        .with_target(es_target("quality", "model:$model AND version:$version",
                               [es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size("500"))])))
    return board.build(variables(), [dashboard_link("Executive", EXECUTIVE_UID),
                                     dashboard_link("Technical", TECHNICAL_UID)])
