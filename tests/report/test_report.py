"""The report's figures carry the outputs' numbers: traces and heatmaps against the records
they come from, the fullest of repeated panes, and missing, empty or bad files."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from ampel_monitor.cli import main
from ampel_monitor.report import (
    DRIFT_THRESHOLDS,
    alert_intervals,
    axis_time,
    build_report,
    executive_summary,
    firing_now,
    load_outputs,
    render_html,
    write_report,
)
from drift.base import JS, PSI
from tests.report.records import FEATURES, end, metrics_record, quality_record, write_jsonl

SERIES = (("credit-risk", "v1"), ("credit-risk", "v2"), ("fraud-detector", "v3"))


def _report(directory):
    return build_report(load_outputs(directory))


def _trace(chart, name):
    traces = [t for t in chart.figure.data if t.name == name]
    assert len(traces) == 1, [t.name for t in chart.figure.data]
    return traces[0]


def _figures(page: str) -> list[dict]:
    found = re.search(r"<script type='application/json' id='ampel-figures'>(.*?)</script>", page, re.S)
    assert found
    return json.loads(found.group(1))


@pytest.fixture
def run_dir(tmp_path):
    """Three model versions, 12 windows each, written in a shuffled order."""
    rng = np.random.default_rng(11)
    records = [metrics_record(rng, model, version, minute) for model, version in SERIES for minute in range(5, 17)]
    order = rng.permutation(len(records))
    write_jsonl(tmp_path / "metrics.jsonl", [records[i] for i in order])
    return tmp_path, records


def test_latency_traces_are_the_p95s_of_each_model_version(run_dir):
    directory, records = run_dir
    report = _report(directory)
    p95 = report.chart("exec-latency-p95")
    assert [t.name for t in p95.figure.data] == [f"{m}/{v}" for m, v in SERIES]
    for model, version in SERIES:
        mine = sorted((r for r in records if (r["model"], r["version"]) == (model, version)), key=lambda r: r["window_end"])
        trace = _trace(p95, f"{model}/{version}")
        assert list(trace.x) == [axis_time(r["window_end"]) for r in mine]
        assert list(trace.y) == [r["latency_ms"]["p95"] for r in mine]
        percentiles = report.chart(f"tech-latency-{model}-{version}")
        for p in ("p50", "p90", "p95", "p99", "max"):
            assert list(_trace(percentiles, p).y) == [r["latency_ms"][p] for r in mine]
        assert list(_trace(report.chart("tech-error-rate"), f"{model}/{version}").y) == [r["error_rate"] for r in mine]
        assert list(_trace(report.chart("tech-throughput"), f"{model}/{version}").y) == [r["throughput_rps"] for r in mine]
        assert list(_trace(report.chart("exec-availability"), f"{model}/{version}").y) == [1 - r["error_rate"] for r in mine]
        assert list(_trace(report.chart("ds-share-drifted"), f"{model}/{version}").y) == [r["share_drifted"] for r in mine]
        assert list(_trace(report.chart("ds-prediction-drift"), f"{model}/{version}").y) == \
            [r["prediction_drift"]["psi"] for r in mine]
        assert list(_trace(report.chart("ds-confidence-drift"), f"{model}/{version}").y) == \
            [r["confidence"]["drift"]["psi"] for r in mine]


def test_heatmaps_are_the_psi_and_js_of_every_feature_and_window(tmp_path):
    rng = np.random.default_rng(5)
    records = [metrics_record(rng, "m", "v1", minute, features=FEATURES if minute != 8 else FEATURES[:2])
               for minute in range(5, 12)]
    records[-1]["features"]["income"]["psi"] = None  # a statistic the window could not compute
    write_jsonl(tmp_path / "metrics.jsonl", records)
    report = _report(tmp_path)
    for stat in ("psi", "js"):
        heatmap = report.chart(f"ds-{stat}-m-v1").figure.data[0]
        assert list(heatmap.y) == list(FEATURES)
        assert list(heatmap.x) == [axis_time(r["window_end"]) for r in records]
        expected = [[(r["features"].get(f) or {}).get(stat) for r in records] for f in FEATURES]
        assert [list(row) for row in heatmap.z] == expected
    assert report.chart("ds-psi-m-v1").figure.data[0].z[2][3] is None  # region is absent from the window ending at minute 8
    # the colour scale reaches twice the drift threshold at least
    assert report.chart("ds-psi-m-v1").figure.data[0].zmax == max(0.4, max(
        v for r in records for e in r["features"].values() for k, v in e.items() if k == "psi" and v is not None))


def test_late_panes_keep_the_fullest_pane_of_each_window(tmp_path):
    rng = np.random.default_rng(3)
    on_time = metrics_record(rng, "m", "v1", 6, count=20)
    fuller = metrics_record(rng, "m", "v1", 6, count=25, late=True)
    again = metrics_record(rng, "m", "v1", 6, count=25, late=True)  # a tie: the later pane wins
    stale = metrics_record(rng, "m", "v1", 6, count=22, late=True)  # fewer events than the fullest: ignored
    other = metrics_record(rng, "m", "v1", 7, count=30)
    write_jsonl(tmp_path / "metrics.jsonl", [on_time, other, fuller, again, stale])
    q_full = quality_record(rng, "m", "v1", 6, labelled=40)
    q_first = quality_record(rng, "m", "v1", 6, labelled=10)
    write_jsonl(tmp_path / "quality.jsonl", [q_first, q_full, quality_record(rng, "m", "v1", 6, labelled=12)])
    outputs = load_outputs(tmp_path)
    assert outputs.metrics == [again, other]
    assert outputs.superseded_panes == 3
    assert outputs.quality == [q_full]
    report = build_report(outputs)
    assert list(_trace(report.chart("exec-latency-p95"), "m/v1").y) == [again["latency_ms"]["p95"], other["latency_ms"]["p95"]]
    quality = report.chart("ds-quality-m-v1")
    assert list(_trace(quality, "accuracy").y) == [q_full["quality"]["accuracy"]]
    assert list(_trace(quality, "labelled fraction").y) == [40 / 300]


def test_missing_files_become_notes_and_the_page_still_renders(tmp_path):
    outputs = load_outputs(tmp_path)
    assert outputs.notes == {kind: f"{kind}.jsonl not found" for kind in ("metrics", "alerts", "dead_letters", "quality", "ab")}
    report = build_report(outputs)
    assert report.charts() and all(c.figure is None and c.note for c in report.charts())
    page = render_html(report)
    assert _figures(page) == []
    assert "metrics.jsonl not found" in page and "quality.jsonl not found" in page


def test_empty_files_and_unreadable_lines_are_named(tmp_path):
    rng = np.random.default_rng(8)
    good = [metrics_record(rng, "m", "v1", minute) for minute in (5, 6)]
    bad = ["{not json", json.dumps([1, 2]), json.dumps({"model": "m", "version": "v1"}),
           json.dumps({**good[0], "window_end": "yesterday"}), json.dumps({**good[0], "version": 3})]
    write_jsonl(tmp_path / "metrics.jsonl", [good[0], *bad, "", good[1]])
    for name in ("alerts", "dead_letters", "quality", "ab"):
        (tmp_path / f"{name}.jsonl").write_text("")
    broken = {**metrics_record(rng, "m", "v2", 5), "latency_ms": None, "error_rate": "high", "features": [1],
              "confidence": {"mean": float("nan")}, "resources": "none", "importance": {"age": 3}}
    write_jsonl(tmp_path / "more.jsonl", [broken])
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(broken) + "\n")
    outputs = load_outputs(tmp_path)
    assert outputs.notes["metrics"] == "5 unreadable lines of metrics.jsonl skipped"
    assert outputs.notes["quality"] == "quality.jsonl is empty"
    assert [r["window_end"] for r in outputs.metrics] == [end(5), end(5), end(6)]
    report = build_report(outputs)
    assert list(_trace(report.chart("exec-latency-p95"), "m/v1").y) == [r["latency_ms"]["p95"] for r in good]
    assert "m/v2" not in [t.name for t in report.chart("exec-latency-p95").figure.data]  # no p95 in any window
    assert list(_trace(report.chart("tech-latency-m-v2"), "p95").y) == [None]
    assert report.chart("ds-quality").note == "quality.jsonl is empty (a run without labels has none)"
    page = render_html(report)
    assert "5 unreadable lines of metrics.jsonl skipped" in page


def test_feature_importance_is_charted_only_when_present(tmp_path):
    rng = np.random.default_rng(2)
    with_importance = [metrics_record(rng, "m", "v1", minute, importance=True) for minute in range(5, 10)]
    without = [metrics_record(rng, "n", "v1", minute) for minute in range(5, 10)]
    write_jsonl(tmp_path / "metrics.jsonl", with_importance + without)
    report = _report(tmp_path)
    chart = report.chart("ds-importance-m-v1")
    assert sorted(t.name for t in chart.figure.data) == sorted(FEATURES)
    for feature in FEATURES:
        assert list(_trace(chart, feature).y) == [r["importance"][feature]["mean_abs"] for r in with_importance]
    with pytest.raises(KeyError):
        report.chart("ds-importance-n-v1")
    write_jsonl(tmp_path / "metrics.jsonl", without)
    assert _report(tmp_path).chart("ds-importance").note == "no attributions in the events"


def _alert(model, version, rule, severity, state, minute, value=1.0):
    return {"model": model, "version": version, "window_start": end(minute - 5), "window_end": end(minute), "rule": rule,
            "severity": severity, "value": value, "threshold": 0.5, "state": state, "detail": ""}


def test_alerts_timeline_models_in_alert_and_the_executive_summary(tmp_path):
    rng = np.random.default_rng(4)
    metrics = [metrics_record(rng, m, v, minute) for m, v in SERIES for minute in range(5, 30)]
    write_jsonl(tmp_path / "metrics.jsonl", metrics)
    alerts = [
        _alert("credit-risk", "v1", "data_drift", "warning", "firing", 8),
        _alert("fraud-detector", "v3", "latency_p95", "critical", "firing", 10),
        _alert("credit-risk", "v1", "data_drift", "warning", "resolved", 12),
        _alert("fraud-detector", "v3", "latency_p95", "critical", "resolved", 15),
        _alert("credit-risk", "v1", "data_drift", "warning", "firing", 20),
        _alert("credit-risk", "v2", "error_rate", "critical", "firing", 22),
    ]
    write_jsonl(tmp_path / "alerts.jsonl", alerts[::-1])  # the report orders them by window
    outputs = load_outputs(tmp_path)
    assert alert_intervals(outputs.alerts) == [
        (("credit-risk", "v1", "data_drift", "warning"), end(8), end(12)),
        (("fraud-detector", "v3", "latency_p95", "critical"), end(10), end(15)),
        (("credit-risk", "v1", "data_drift", "warning"), end(20), None),
        (("credit-risk", "v2", "error_rate", "critical"), end(22), None),
    ]
    assert set(firing_now(outputs.alerts)) == {("credit-risk", "v1", "data_drift", "warning"),
                                               ("credit-risk", "v2", "error_rate", "critical")}
    report = build_report(outputs)
    timeline = report.chart("tech-alerts-timeline")
    warning, critical = _trace(timeline, "warning"), _trace(timeline, "critical")
    last = axis_time(end(29))  # still firing: drawn to the last window
    assert list(warning.x) == [axis_time(end(8)), axis_time(end(12)), None, axis_time(end(20)), last, None]
    assert list(critical.x) == [axis_time(end(10)), axis_time(end(15)), None, axis_time(end(22)), last, None]
    assert list(critical.y) == ["fraud-detector/v3 latency_p95"] * 2 + [None] + ["credit-risk/v2 error_rate"] * 2 + [None]
    firing = report.chart("exec-alerts")
    assert list(_trace(firing, "credit-risk").y) == [1, 0, 1, 2]
    assert list(_trace(firing, "fraud-detector").y) == [1, 0]

    rows = {(r["model"], r["version"]): r for r in executive_summary(outputs)}
    for model, version in SERIES:
        mine = sorted((r for r in metrics if (r["model"], r["version"]) == (model, version)), key=lambda r: r["window_end"])
        row = rows[(model, version)]
        errors, count = sum(r["errors"] for r in mine), sum(r["count"] for r in mine)
        assert row["error_rate"] == pytest.approx(errors / count, abs=1e-15)
        assert row["availability"] == pytest.approx(1 - errors / count, abs=1e-15)
        assert row["p95_worst_ms"] == max(r["latency_ms"]["p95"] for r in mine)
        assert row["p95_last_ms"] == mine[-1]["latency_ms"]["p95"]
        assert row["throughput_peak_rps"] == max(r["throughput_rps"] for r in mine)
    assert rows[("credit-risk", "v1")]["alerts"] == [("data_drift", "warning")]
    assert rows[("credit-risk", "v2")]["status"] == "critical"
    assert rows[("fraud-detector", "v3")]["status"] == "ok"
    assert "Models in alert: <b>1 of 2</b>: credit-risk" in render_html(report)


def test_quality_bias_and_ab_charts(tmp_path):
    rng = np.random.default_rng(6)
    write_jsonl(tmp_path / "metrics.jsonl", [metrics_record(rng, "m", "v1", minute) for minute in range(5, 10)])
    classification = [quality_record(rng, "m", v, minute, labelled=60 + minute) for v in ("v1", "v2") for minute in range(5, 10)]
    regression = [quality_record(rng, "r", "v1", minute, labelled=50, task="regression") for minute in range(5, 10)]
    write_jsonl(tmp_path / "quality.jsonl", classification + regression)
    ab = [{"model": "m", "window_start": end(minute - 5), "window_end": end(minute), "kind": kind, "baseline": "v1",
           "versions": {"v2": {"error_rate_difference": float(rng.normal()) if kind == "metrics" else None,
                               "error_rate_pvalue": 0.5, "accuracy_pvalue": 0.5,
                               "accuracy_difference": float(rng.normal()) if kind == "quality" else None,
                               "latency_p95_difference_ms": float(rng.normal()) if kind == "metrics" else None}}}
          for minute in range(5, 10) for kind in ("metrics", "quality")]
    write_jsonl(tmp_path / "ab.jsonl", ab)
    report = _report(tmp_path)
    for version in ("v1", "v2"):
        mine = [q for q in classification if q["version"] == version]
        chart = report.chart(f"ds-quality-m-{version}")
        for metric in ("accuracy", "f1", "labelled_fraction"):
            assert list(_trace(chart, metric.replace("_", " ")).y) == [q["quality"][metric] for q in mine]
        bias = report.chart(f"ds-bias-m-{version}-sex")
        for measure in ("demographic_parity_difference", "equal_opportunity_difference", "disparate_impact_ratio"):
            assert list(_trace(bias, measure.replace("_", " ")).y) == [q["quality"]["bias"]["sex"][measure] for q in mine]
    chart = report.chart("ds-quality-r-v1")
    assert list(_trace(chart, "MAE").y) == [q["quality"]["mae"] for q in regression]
    assert list(_trace(chart, "RMSE").y) == [q["quality"]["rmse"] for q in regression]
    chart = report.chart("ds-ab-m")
    for kind, key in (("metrics", "error_rate_difference"), ("metrics", "latency_p95_difference_ms"),
                      ("quality", "accuracy_difference")):
        trace = _trace(chart, f"v2 {key}")
        assert list(trace.x) == [axis_time(r["window_end"]) for r in ab if r["kind"] == kind]
        assert list(trace.y) == [r["versions"]["v2"][key] for r in ab if r["kind"] == kind]


def test_resources_and_dead_letters(tmp_path):
    rng = np.random.default_rng(9)
    metrics = [metrics_record(rng, "m", v, minute) for minute in range(5, 9) for v in ("v1", "v2")]
    for r in metrics[1::2]:
        r["resources"] = {**r["resources"], "samples": 10}  # the fuller pane of the model's hosts is v1's
    write_jsonl(tmp_path / "metrics.jsonl", metrics)
    reasons = ["decode_error"] * 3 + ["unknown_model"] * 5 + ["label_too_late"]
    write_jsonl(tmp_path / "dead_letters.jsonl", [{"reason": r, "detail": "", "record": "{}"} for r in reasons])
    report = _report(tmp_path)
    resources = report.chart("tech-resources")
    assert [t.name for t in resources.figure.data] == ["m cpu", "m memory"]  # no gpu samples
    assert list(_trace(resources, "m cpu").y) == [r["resources"]["cpu_mean"] for r in metrics[0::2]]
    bars = report.chart("tech-dead-letters").figure.data[0]
    assert (list(bars.x), list(bars.y)) == (["unknown_model", "decode_error", "label_too_late"], [5, 3, 1])


def test_the_page_is_self_contained(run_dir, tmp_path):
    directory, _ = run_dir
    rng = np.random.default_rng(1)
    hostile = metrics_record(rng, "a</script><b>&", "v1", 5)
    with (directory / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(hostile) + "\n")
    report = _report(directory)
    page = render_html(report)
    assert page.count("* plotly.js v") == 1  # the library, inlined once
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=['\"]?(https?:)?//", page)
    assert "</script><b>" not in page
    drawn = [c for c in report.charts() if c.figure is not None]
    figures = _figures(page)
    assert [f["id"] for f in figures] == [c.id for c in drawn]
    assert all(f"id='{c.id}'" in page for c in drawn)
    p95 = next(f for f in figures if f["id"] == "exec-latency-p95")["figure"]
    assert "a&lt;/script&gt;&lt;b&gt;&amp;/v1" in [t["name"] for t in p95["data"]]
    for chart in drawn:  # every drawn chart has something to draw
        assert any(v is not None for t in chart.figure.data for v in (t.z if t.type == "heatmap" else t.y) or ()), chart.id

    out = tmp_path / "sub" / "report.html"
    written = write_report(directory, out)
    assert written.path == out and written.bytes == out.stat().st_size and written.charts == len(drawn)


def test_report_command(run_dir, tmp_path, capsys):
    directory, _ = run_dir
    assert main(["report", "--metrics", str(directory), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 1_000_000
    assert capsys.readouterr().out.startswith("report: ")
    assert main(["report", "--metrics", str(directory)]) == 0
    assert (directory / "report.html").is_file()
    assert main(["report", "--metrics", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.html")]) == 2
    assert "--metrics: not a directory" in capsys.readouterr().err


def test_the_heatmap_scales_use_the_default_drift_thresholds():
    assert DRIFT_THRESHOLDS == {"psi": PSI.default_threshold, "js": JS.default_threshold}


def test_the_report_does_not_import_beam():
    code = "import sys, ampel_monitor.report\nassert 'apache_beam' not in sys.modules\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_colliding_chart_ids_and_alerts_without_a_version(tmp_path):
    rng = np.random.default_rng(10)
    first, second = metrics_record(rng, "a-b", "c", 5), metrics_record(rng, "a", "b-c", 5)
    write_jsonl(tmp_path / "metrics.jsonl", [first, second])
    write_jsonl(tmp_path / "alerts.jsonl", [{**_alert("a", None, "concept_drift", "page", "firing", 5)}])
    report = _report(tmp_path)
    ids = [c.id for c in report.charts()]
    assert len(ids) == len(set(ids))
    # in model order: a/b-c, then a-b/c
    assert list(report.chart("tech-latency-a-b-c").figure.data[2].y) == [second["latency_ms"]["p95"]]
    assert list(report.chart("tech-latency-a-b-c-2").figure.data[2].y) == [first["latency_ms"]["p95"]]
    timeline = report.chart("tech-alerts-timeline")
    assert list(_trace(timeline, "page").y) == ["a concept_drift", "a concept_drift", None]
    page = render_html(report)
    assert [f["id"] for f in _figures(page)] == [c.id for c in report.charts() if c.figure is not None]
