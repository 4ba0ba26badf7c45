"""The pipeline on the embedded runner against an offline numpy/scipy computation per window."""

from __future__ import annotations

import json
import operator
from datetime import datetime

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from ampel_monitor.config import load_config
from drift.profile import ReferenceProfile
from pipelines.monitor import run
from tests.drift.conftest import psi_reference
from tests.pipeline.streams import expected_windows, make_events, window_events, write_setup

pytestmark = pytest.mark.it


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def assert_window_matches(metrics: dict, events: list[dict], profile: ReferenceProfile, size_ms: int) -> None:
    start, end = epoch_ms(metrics["window_start"]), epoch_ms(metrics["window_end"])
    assert end - start == size_ms
    raw = window_events(events, metrics["model"], metrics["version"], start, end)
    failed = sum(e["status"] == "error" for e in raw)
    assert metrics["count"] == len(raw)
    assert metrics["errors"] == failed
    assert metrics["error_rate"] == failed / len(raw)
    assert metrics["throughput_rps"] == len(raw) / (size_ms / 1000)
    latency = np.array([e["latency_ms"] for e in raw])
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        true = np.quantile(latency, q, method="lower")
        assert abs(metrics["latency_ms"][name] - true) <= 0.01 * true * (1 + 1e-12), name
    assert metrics["latency_ms"]["max"] == latency.max()
    confidence = np.array([e["confidence"] for e in raw if e["confidence"] is not None])
    assert metrics["confidence"]["count"] == confidence.size
    assert metrics["confidence"]["mean"] == pytest.approx(confidence.mean(), rel=1e-12)
    assert metrics["confidence"]["below_threshold"] == np.mean(confidence < 0.5)

    for name in ("x", "y"):
        feature = profile.features[name]
        values = np.array([np.nan if e["features"].get(name) is None else e["features"][name] for e in raw])
        present = values[~np.isnan(values)]
        current = np.bincount(np.searchsorted(feature.edges, present, side="right"), minlength=10)
        entry = metrics["features"][name]
        assert entry["count"] == present.size
        assert entry["missing_share"] == (values.size - present.size) / values.size
        assert entry["psi"] == pytest.approx(psi_reference(feature.counts, current), rel=1e-9)
        assert entry["js"] == pytest.approx(jensenshannon(feature.counts, current, base=2), abs=1e-9)
        # the reference sample itself is not kept: compare KS with the reference's own bins
        assert entry["ks_statistic"] == pytest.approx(
            np.max(np.abs(np.cumsum(feature.ks_counts) / feature.count
                          - np.cumsum(_ks_bins(feature, present)) / present.size)),
            abs=1e-12,
        )
    city = profile.features["city"]
    observed = [e["features"].get("city") for e in raw]
    counts = [sum(v == c for v in observed) for c in city.categories]
    counts.append(sum(v is not None and v not in city.categories for v in observed))
    entry = metrics["features"]["city"]
    assert entry["missing_share"] == sum(v is None for v in observed) / len(observed)
    assert entry["psi"] == pytest.approx(psi_reference(city.counts, np.array(counts)), rel=1e-9)
    table = np.array([city.counts, counts])
    table = table[:, table.sum(axis=0) > 0]
    expected = chi2_contingency(table, correction=False)
    assert entry["chi2_statistic"] == pytest.approx(expected.statistic, rel=1e-9)
    assert entry["chi2_pvalue"] == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)


def _ks_bins(feature, present: np.ndarray) -> np.ndarray:
    """Counts of values on the profile's point-and-interval KS bins, written out plainly."""
    edges = feature.ks_edges
    counts, lower = [], -np.inf
    for edge in edges:
        counts += [np.sum((present > lower) & (present < edge)), np.sum(present == edge)]
        lower = edge
    counts.append(np.sum(present > lower))
    return np.array(counts)


@pytest.mark.parametrize("windows", [{"size": "5m", "slide": "1m"}, {"size": "2m", "slide": "2m"}], ids=["sliding", "tumbling"])
def test_every_window_equals_the_offline_computation(tmp_path, windows):
    events = make_events(seed=3, minutes=20, per_minute=150)
    config = load_config(write_setup(tmp_path, events, windows))
    summary = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "out"))
    size_ms, slide_ms = config.windows.size_ms, config.windows.slide_ms
    emitted = [(m["model"], m["version"], epoch_ms(m["window_end"])) for m in summary.metrics]
    assert len(emitted) == len(set(emitted)), "a window was emitted twice"
    assert set(emitted) == expected_windows(events, size_ms, slide_ms)
    assert summary.late_windows == 0 and summary.dead_letters == {}
    profiles = {m: ReferenceProfile.load(tmp_path / f"{m}.json") for m in ("alpha", "beta")}
    for metrics in summary.metrics:
        assert_window_matches(metrics, events, profiles[metrics["model"]], size_ms)


def test_an_avro_file_gives_the_windows_of_its_json_lines(tmp_path):
    """The bulk Avro decoder (categorical columns counted from their codes) against the
    record-by-record JSON path: the same metrics, value for value."""
    import fastavro

    from schemas import load_schema

    events = make_events(seed=5, minutes=8, per_minute=200, drift_from=4)
    config = load_config(write_setup(tmp_path, events, {"size": "2m", "slide": "1m"}))
    schema = load_schema("PredictionEvent")
    with (tmp_path / "events.avro").open("wb") as handle:
        fastavro.writer(handle, schema, [{"attributes": {}, "attributions": None, **e} for e in events])
    from_json = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "json")).metrics
    from_avro = run(config, [str(tmp_path / "events.avro")], out_dir=str(tmp_path / "avro")).metrics
    assert len(from_json) > 10 and all(m["features"]["city"]["count"] for m in from_json)
    key = operator.itemgetter("model", "version", "window_end")
    assert sorted(from_avro, key=key) == sorted(from_json, key=key)


def test_ks_statistic_is_close_to_scipy_on_raw_values(tmp_path):
    """Beyond the exact bin arithmetic: D within 0.01 of ks_2samp against the reference sample."""
    events = make_events(seed=4, minutes=10, per_minute=300, drift_from=5)
    config = load_config(write_setup(tmp_path, events, {"size": "5m", "slide": "5m"}))
    summary = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "out"))
    from tests.pipeline.streams import reference_columns

    reference_x = reference_columns(np.random.default_rng(0))["x"]  # alpha's reference, first drawn
    for metrics in (m for m in summary.metrics if m["model"] == "alpha" and m["version"] == "v1"):
        raw = window_events(events, "alpha", "v1", epoch_ms(metrics["window_start"]), epoch_ms(metrics["window_end"]))
        expected = ks_2samp(reference_x, [e["features"]["x"] for e in raw]).statistic
        assert abs(metrics["features"]["x"]["ks_statistic"] - expected) <= 0.01


def test_output_lines_have_the_documented_fields(tmp_path):
    events = make_events(seed=5, minutes=3, per_minute=60)
    config = load_config(write_setup(tmp_path, events, {"size": "1m", "slide": "1m"}))
    summary = run(config, [str(tmp_path / "events.jsonl")], out_dir=str(tmp_path / "out"))
    line = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"model", "version", "window_start", "window_end", "count", "throughput_rps", "error_rate",
            "latency_ms", "features", "share_drifted", "late"} <= set(line)
    assert set(line["latency_ms"]) == {"p50", "p90", "p95", "p99", "max"}
    assert line["window_end"].endswith("Z") and line["window_start"].endswith("Z")
    assert summary.windows == len(summary.metrics)


def test_a_bounded_replay_runs_in_process_unless_a_runner_is_chosen():
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    from pipelines.monitor import _local_runner

    assert isinstance(_local_runner(PipelineOptions([])), FnApiRunner)  # not Prism, which it would fetch first
    assert _local_runner(PipelineOptions(["--runner=PrismRunner"])) is None
