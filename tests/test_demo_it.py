"""``ampel-monitor demo``: the seeded scenario's incidents are found, and nothing else."""

from __future__ import annotations

import io

import pytest

from ampel_monitor.demo import run_demo, summarize

pytestmark = pytest.mark.it


def test_demo_finds_every_injected_incident_and_nothing_else(tmp_path):
    progress = io.StringIO()
    scenario, summary = run_demo(tmp_path, seed=7, hours=1.0, rate_per_s=30.0, stream=progress)
    firing = {(a["model"], a["rule"], a["severity"]) for a in summary.alerts if a["state"] == "firing"}
    assert firing == {
        ("fraud-detector", "latency_p95", "critical"),
        ("demand-forecast", "error_rate", "critical"),
        ("demand-forecast", "resource_utilisation", "warning"),
        ("credit-risk", "data_drift", "warning"),
        ("credit-risk", "feature_drift", "info"),
    }
    incidents = {i.kind: i for i in scenario.incidents}
    for alert in (a for a in summary.alerts if a["state"] == "firing"):
        kind = {"latency_p95": "latency_spike", "error_rate": "error_burst", "resource_utilisation": "resource_pressure",
                "data_drift": "drift", "feature_drift": "drift"}[alert["rule"]]
        incident = incidents[kind]
        end = _ms(alert["window_end"])
        assert incident.start_ms < end <= incident.end_ms + 5 * 60_000, alert  # a window overlapping the incident
    drifted = {f for m in summary.metrics for f in m["drifted_features"]}
    assert drifted == {"income", "region"}
    assert summary.dead_letters == {}
    text = summarize(summary, scenario)
    assert "alerts fired:" in text and "credit-risk/v1 income: first in the window ending" in text
    # delayed labels: quality for every model version, A/B of credit-risk's v2 against v1, no quality alert
    assert {(q["model"], q["version"]) for q in summary.quality} == {
        ("credit-risk", "v1"), ("credit-risk", "v2"), ("fraud-detector", "v3"), ("demand-forecast", "v5")}
    assert {(r["model"], r["baseline"], *r["versions"]) for r in summary.ab} == {("credit-risk", "v1", "v2")}
    assert "quality (windows with labels):" in text and "credit-risk/v1: accuracy" in text
    # attributions: credit-risk's importance per window, the same top features as its reference throughout
    credit = [m for m in summary.metrics if m["model"] == "credit-risk"]
    assert credit and all(m["importance"]["credit_score"]["rank"] == 1 and m["importance_rank_change"] < 0.15
                          for m in credit)
    assert all(m["importance"] is None for m in summary.metrics if m["model"] != "credit-risk")
    assert "events decoded" in progress.getvalue() and "done in" in progress.getvalue()
    report = tmp_path / "report.html"
    assert f"report: 32 charts -> {report}" in progress.getvalue()  # with quality, A/B and importance
    assert report.stat().st_size > 1_000_000 and "Models in alert: <b>1 of 3</b>: credit-risk" in report.read_text()


def _ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1000)
