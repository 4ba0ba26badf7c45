"""The report of a real run (labels, resources, a baseline version, dead letters) carries the
run's numbers, and renders in a real headless Chromium: no console errors, nothing fetched,
every chart drawn; a screenshot is kept as a test artifact."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from selenium.webdriver.support.ui import WebDriverWait

from ampel_monitor.config import load_config
from ampel_monitor.quality import attribution_importance
from ampel_monitor.report import OUTPUT_FILES, alert_intervals, axis_time, build_report, load_outputs, write_report
from drift.profile import ReferenceProfile
from pipelines.monitor import OUTPUT_FILES as PIPELINE_FILES
from pipelines.monitor import run
from tests.pipeline.streams import START_MS, make_events, reference_columns, write_setup
from tests.report.conftest import artifact_dir

pytestmark = pytest.mark.it

MINUTE = 60_000


@pytest.fixture(scope="module")
def run_out(tmp_path_factory) -> Path:
    """A 30-minute run of two models: a latency spike, an error burst, drift, delayed labels."""
    tmp = tmp_path_factory.mktemp("run")
    events = make_events(seed=9, minutes=30, per_minute=240, drift_from=18, spike=(8, 12), errors=(20, 24))
    for i, e in enumerate(events):
        e["attributes"] = {"sex": "f" if (i // 3) % 2 else "m"}
    path = write_setup(tmp, events, {"size": "3m", "slide": "1m", "allowed_lateness": "0s"},
                       extra={"labels": {"max_delay": "1h", "min_labelled": 30, "min_fraction": 0.1}})
    rng = np.random.default_rng(4)
    for model in ("alpha", "beta"):
        columns = reference_columns(rng)
        columns["label"] = np.where(rng.random(columns["prediction"].size) < 0.9, columns["prediction"],
                                    np.where(columns["prediction"] == "yes", "no", "yes"))
        ReferenceProfile.build(columns, prediction="prediction", confidence="confidence", label="label",
                               resolution=200).save(tmp / f"{model}.json")
    config = yaml.safe_load(path.read_text())
    for model in config["models"]:
        model.update({"positive_label": "yes", "sensitive": ["sex"], "baseline_version": "v1"})
    path.write_text(yaml.safe_dump(config))
    with (tmp / "labels.jsonl").open("w") as handle:
        for e in events[::2]:
            right = rng.random() < 0.9
            label = e["prediction"] if right else ("no" if e["prediction"] == "yes" else "yes")
            delay = int(rng.integers(0, 5 * MINUTE)) if rng.random() > 0.02 else 70 * MINUTE
            handle.write(json.dumps({"event_id": e["event_id"], "model_id": e["model_id"], "label": label,
                                     "timestamp": e["timestamp"] + delay}) + "\n")
    with (tmp / "resources.jsonl").open("w") as handle:
        for ts in range(START_MS, START_MS + 30 * MINUTE, 15_000):
            for model in ("alpha", "beta"):
                handle.write(json.dumps({"host": f"{model}-0", "model_id": model, "timestamp": ts,
                                         "cpu": float(rng.uniform(0.3, 0.9)), "memory": float(rng.uniform(0.4, 0.6)),
                                         "gpu": None}) + "\n")
    run(load_config(path), [str(tmp / "events.jsonl")], [str(tmp / "resources.jsonl")], labels=[str(tmp / "labels.jsonl")])
    return tmp / "out"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trace(chart, name):
    (trace,) = [t for t in chart.figure.data if t.name == name]
    return trace


def test_output_files_are_the_pipelines():
    assert OUTPUT_FILES == PIPELINE_FILES


def test_the_report_of_a_real_run_carries_its_numbers(run_out):
    metrics, quality = _jsonl(run_out / "metrics.jsonl"), _jsonl(run_out / "quality.jsonl")
    ab, dead = _jsonl(run_out / "ab.jsonl"), _jsonl(run_out / "dead_letters.jsonl")
    assert metrics and quality and ab and dead
    # a batch run writes each window once: the report's panes are the file's records
    assert len({(m["model"], m["version"], m["window_end"]) for m in metrics}) == len(metrics)
    report = build_report(load_outputs(run_out))
    series = sorted({(m["model"], m["version"]) for m in metrics})
    assert series == [("alpha", "v1"), ("alpha", "v2"), ("beta", "v1")]
    for model, version in series:
        mine = sorted((m for m in metrics if (m["model"], m["version"]) == (model, version)), key=lambda m: m["window_end"])
        p95 = _trace(report.chart("exec-latency-p95"), f"{model}/{version}")
        assert list(p95.x) == [axis_time(m["window_end"]) for m in mine]
        assert list(p95.y) == [m["latency_ms"]["p95"] for m in mine]
        heatmap = report.chart(f"ds-psi-{model}-{version}").figure.data[0]
        assert list(heatmap.y) == ["x", "y", "city"]
        assert [list(row) for row in heatmap.z] == [[m["features"][f]["psi"] for m in mine] for f in ("x", "y", "city")]
        mine_q = sorted((q for q in quality if (q["model"], q["version"]) == (model, version)),
                        key=lambda q: (q["window_end"], q["quality"]["labelled"]))
        fullest = {q["window_end"]: q for q in mine_q}  # per window the pane with the most labels
        accuracy = _trace(report.chart(f"ds-quality-{model}-{version}"), "accuracy")
        assert list(accuracy.y) == [q["quality"]["accuracy"] for q in fullest.values()]
    assert max(max(m["latency_ms"]["p95"] for m in metrics if m["model"] == "alpha" and m["version"] == "v1"), 0) >= 2000
    bars = report.chart("tech-dead-letters").figure.data[0]
    assert dict(zip(bars.x, bars.y)) == dict(Counter(d["reason"] for d in dead))
    alerts = sorted(_jsonl(run_out / "alerts.jsonl"), key=lambda a: a["window_end"])
    fired = {(a["model"], a["version"], a["rule"]) for a in alerts if a["state"] == "firing"}
    assert {("alpha", "v1", "latency_p95"), ("beta", "v1", "error_rate")} <= fired
    assert {k[:3] for k, _, _ in alert_intervals(alerts)} == fired
    ab_chart = report.chart("ds-ab-alpha")
    latency = _trace(ab_chart, "v2 latency_p95_difference_ms")
    expected = sorted((a for a in ab if a["kind"] == "metrics"), key=lambda a: a["window_end"])
    assert list(latency.y) == [a["versions"]["v2"]["latency_p95_difference_ms"] for a in expected]


_CHART_STATE = """
return Array.from(document.querySelectorAll('div.chart')).map(function (div) {
  var svg = div.querySelector('svg.main-svg'), box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  var lines = Array.from(div.querySelectorAll('g.trace path.js-line')).filter(function (p) {
    return (p.getAttribute('d') || '').length > 1; }).length;
  var images = Array.from(div.querySelectorAll('g.hm image')).filter(function (i) {
    return (i.getAttribute('href') || i.getAttribute('xlink:href') || '').indexOf('data:image/png') === 0; }).length;
  var bars = div.querySelectorAll('g.trace.bars g.point path').length;
  return {id: div.id, plotted: div.classList.contains('js-plotly-plot'), width: box.width, height: box.height,
          traces: div.querySelectorAll('g.trace').length + div.querySelectorAll('g.hm').length,
          drawn: lines + images + bars};
});
"""


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_page_renders_in_chromium(run_out, chromium, tmp_path):
    directory = tmp_path / "outputs"
    shutil.copytree(run_out, directory)
    rng = np.random.default_rng(12)
    metrics = _jsonl(directory / "metrics.jsonl")
    for record in metrics:  # attribution-based importance, as events with attributions give it
        sums = {f: float(rng.uniform(0, 3)) * record["count"] for f in ("x", "y", "city")}
        record["importance"] = attribution_importance(sums, record["count"])
    (directory / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    page = tmp_path / "report.html"
    write_report(directory, page)
    report = build_report(load_outputs(directory))
    drawn = {c.id: c for c in report.charts() if c.figure is not None}
    assert "ds-importance-alpha-v1" in drawn and "tech-resources" in drawn and "ds-bias-alpha-v1-sex" in drawn

    driver = chromium()
    driver.get(page.as_uri())
    rendered = WebDriverWait(driver, 120).until(lambda d: d.execute_script("return window.ampelRendered"))
    assert rendered == len(drawn)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    assert driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == []
    states = driver.execute_script(_CHART_STATE)
    assert [s["id"] for s in states] == list(drawn)
    for state in states:
        chart = drawn[state["id"]]
        assert state["plotted"] and state["width"] > 0 and state["height"] > 0, state
        assert state["traces"] == len(chart.figure.data), state
        assert state["drawn"] > 0, state

    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1}})
    data = base64.b64decode(shot["data"])
    assert _png_size(data) == (1400, height)
    (tmp_path / "report.png").write_bytes(data)
    shutil.copy(tmp_path / "report.png", artifact_dir() / "report.png")
    shutil.copy(page, artifact_dir() / "report.html")

    # the console check sees errors: a page that throws is reported
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head>"
                      "<body><script>throw new Error('ampel-check')</script></body></html>")
    driver.get(broken.as_uri())
    assert any("ampel-check" in entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE")
