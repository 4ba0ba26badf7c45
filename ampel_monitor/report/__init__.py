"""``ampel-monitor report``: one self-contained HTML page of a run's outputs, readable offline.

Reads the JSON-lines outputs of a run (``metrics.jsonl``, ``alerts.jsonl``,
``dead_letters.jsonl``, ``quality.jsonl``, ``ab.jsonl``) and draws them with plotly in
three views: executive (availability, p95 latency, throughput, error rate against the
operating targets; models in alert), technical (latency percentiles, throughput, error
rate by model and version, resources, dead letters by reason, the alerts timeline) and
data science (PSI and Jensen-Shannon heatmaps feature x window, share of drifted
features, prediction and confidence drift, accuracy / F1 / MAE with the labelled
fraction, bias per sensitive attribute, feature importance, A/B differences).

The page inlines plotly.js once and every figure as JSON: it needs no network. A
window can be written several times (late panes, or quality panes updated as labels
arrive): the report keeps the fullest pane per (model, version, window end), the one
with the most events (quality: the most labelled predictions), the later one on a tie.
A missing or empty file, or unreadable lines, are named in the page, never an error.

Pure Python: no Apache Beam import.
"""

from ampel_monitor.report.outputs import OUTPUT_FILES, RunOutputs, axis_time, latest_panes, load_outputs
from ampel_monitor.report.page import Written, render_html, write_report
from ampel_monitor.report.views import (
    DRIFT_THRESHOLDS,
    TARGETS,
    Chart,
    Report,
    alert_intervals,
    build_report,
    executive_summary,
    firing_now,
)

__all__ = ["DRIFT_THRESHOLDS", "OUTPUT_FILES", "TARGETS", "Chart", "Report", "RunOutputs", "Written", "alert_intervals",
           "axis_time", "build_report", "executive_summary", "firing_now", "latest_panes", "load_outputs", "render_html",
           "write_report"]
