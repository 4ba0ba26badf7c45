"""The pipeline's sinks on the embedded runner (a bounded replay) against real servers:
what lands in Prometheus, Elasticsearch and Alertmanager equals the run's own output files."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import yaml

from ampel_monitor.config import PrometheusSink, load_config
from ampel_monitor.elastic import sample
from ampel_monitor.remote_write import RemoteWriter
from ampel_monitor.series import window_series
from pipelines.monitor import run
from tests.pipeline.streams import START_MS, make_events, write_setup
from tests.services import wait_for
from tests.sinks.records import window_metrics
from transforms.counters import REGISTRY

pytestmark = pytest.mark.it

MINUTE = 60_000


def _events(end_ms: int, minutes: int = 12, **incidents) -> list[dict]:
    """Seeded events of models alpha and beta over ``minutes`` ending at ``end_ms``."""
    events = make_events(seed=5, minutes=minutes, per_minute=200, **incidents)
    for event in events:
        event["timestamp"] += end_ms - minutes * MINUTE - START_MS
    return events


def _setup(tmp_path, events, sinks: dict, labelled: bool = False):
    extra = {"drift": {"min_count": 50}, **({"labels": {"max_delay": "1h"}} if labelled else {})}
    path = write_setup(tmp_path, events, {"size": "2m", "slide": "1m", "allowed_lateness": "0s"}, extra=extra)
    config = yaml.safe_load(path.read_text())
    config["sinks"].update(sinks)
    if labelled:
        for model in config["models"]:
            model.update({"positive_label": "yes", "sensitive": ["sex"], "baseline_version": "v1"})
    path.write_text(yaml.safe_dump(config))
    return load_config(path)


def _labelled(events: list[dict], path) -> None:
    """Gives the events a subgroup and writes a label 0-5 minutes later for two thirds of them."""
    with path.open("w") as handle:
        for i, event in enumerate(events):
            event["attributes"] = {"sex": "fm"[i % 2]}
            if i % 3:
                label = event["prediction"] if i % 5 else ("no" if event["prediction"] == "yes" else "yes")
                handle.write(json.dumps({"event_id": event["event_id"], "model_id": event["model_id"], "label": label,
                                         "timestamp": event["timestamp"] + (i % 5) * MINUTE}) + "\n")


def _stored(observability, selector: str) -> dict:
    stored = {}
    for series in observability.query(f"{selector}[30m]"):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        for ts, value in series["values"]:
            stored[(name, tuple(sorted(labels.items())), int(round(float(ts) * 1000)))] = float(value)
    return stored


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _recent_end() -> int:
    return (int(time.time() * 1000) // MINUTE - 2) * MINUTE


def test_every_window_lands_in_prometheus_at_its_window_end(tmp_path, observability):
    events = _events(_recent_end())
    config = _setup(tmp_path, events, {"prometheus": {"url": f"{observability.prometheus}/api/v1/write"}})
    written = _counter("ampel_sink_writes_total", sink="prometheus")
    summary = run(config, [str(tmp_path / "events.jsonl")])
    assert summary.windows > 20 and not summary.dead_letters

    expected = {}
    for m in summary.metrics:
        for s in window_series(m, "2m"):
            expected[(s.name, s.labels, s.timestamp_ms)] = s.value
    # (the session's Prometheus also holds other tests' models)
    stored = _stored(observability, '{__name__=~"ampel_.+", window="2m", model=~"alpha|beta"}')
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert _counter("ampel_sink_writes_total", sink="prometheus") - written == len(expected)


def test_quality_and_ab_records_land_in_prometheus_and_elasticsearch(tmp_path, observability, elasticsearch):
    events = _events(_recent_end() - 10 * MINUTE, minutes=8)
    prefix = "labelled"
    config = _setup(tmp_path, events, {"prometheus": {"url": f"{observability.prometheus}/api/v1/write"},
                                       "elasticsearch": {"hosts": [elasticsearch.url], "index_prefix": prefix}},
                    labelled=True)
    _labelled(events, tmp_path / "labels.jsonl")
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    summary = run(config, [str(tmp_path / "events.jsonl")], labels=[str(tmp_path / "labels.jsonl")])
    assert summary.quality and summary.ab and not summary.dead_letters

    expected = {}
    for kind, records in (("quality", summary.quality), ("ab", summary.ab)):
        for record in records:
            for s in window_series(record, "2m", kind):
                expected[(s.name, s.labels, s.timestamp_ms)] = s.value
    names = {name for name, _, _ in expected}
    assert {"ampel_accuracy_ratio", "ampel_bias_disparate_impact_ratio", "ampel_subgroup_tpr_ratio",
            "ampel_ab_error_ratio_pvalue", "ampel_ab_accuracy_difference"} <= names
    stored = _stored(observability, f'{{__name__=~"{"|".join(sorted(names))}", window="2m"}}')
    stored = {key: value for key, value in stored.items() if dict(key[1])["model"] in ("alpha", "beta")}
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key

    quality = {(d["_source"]["model"], d["_source"]["version"], d["_source"]["window_end"]): d["_source"]["quality"]
               for d in elasticsearch.search(f"{prefix}-quality")}
    assert quality == {(q["model"], q["version"], q["window_end"]): q["quality"] for q in summary.quality}
    ab = {(d["_source"]["model"], d["_source"]["kind"], d["_source"]["window_end"]): d["_source"]["versions"]
          for d in elasticsearch.search(f"{prefix}-ab")}
    assert ab == {(r["model"], r["kind"], r["window_end"]): r["versions"] for r in summary.ab}


def test_a_rejected_window_is_dead_lettered_with_its_reason_and_counted(tmp_path, observability):
    # Prometheus holds a sample of now, so windows three hours old are too old for its head
    writer = RemoteWriter(PrometheusSink(url=f"{observability.prometheus}/api/v1/write"), "2m")
    assert not writer.write([window_metrics(0, model="clock", base_ms=_recent_end())]).dead_letters
    events = _events(_recent_end() - 180 * MINUTE, minutes=4)
    config = _setup(tmp_path, events, {"prometheus": {"url": f"{observability.prometheus}/api/v1/write"}})
    rejected, retries = _counter("ampel_dead_letter_records_total", reason="prometheus_rejected"), \
        _counter("ampel_sink_retries_total", sink="prometheus")
    summary = run(config, [str(tmp_path / "events.jsonl")])
    assert summary.dead_letters == {"prometheus_rejected": len(summary.metrics)}
    letters = [json.loads(line) for line in (summary.out_dir / "dead_letters.jsonl").read_text().splitlines()]
    assert {letter["source"] for letter in letters} == {
        f"prometheus:{m['model']}/{m['version']}@{m['window_end']}" for m in summary.metrics}
    assert all("too old" in letter["detail"] or "out of bounds" in letter["detail"] for letter in letters)
    assert _counter("ampel_dead_letter_records_total", reason="prometheus_rejected") - rejected == len(summary.metrics)
    assert _counter("ampel_sink_retries_total", sink="prometheus") == retries  # permanent: never retried


def test_elasticsearch_holds_each_window_alert_and_sampled_decision_once_even_after_a_rerun(tmp_path, elasticsearch):
    events = _events(START_MS + 60 * MINUTE, spike=(3, 6))
    prefix = "replay"
    config = _setup(tmp_path, events, {"elasticsearch": {"hosts": [elasticsearch.url], "index_prefix": prefix,
                                                         "decision_log": {"sample": 0.1}}})
    for _ in range(2):  # a re-run writes the same documents again: still one of each
        summary = run(config, [str(tmp_path / "events.jsonl")])
    assert summary.alerts and not summary.dead_letters
    windows = Counter((d["_source"]["model"], d["_source"]["version"], d["_source"]["window_end"], d["_source"]["count"])
                      for d in elasticsearch.search(f"{prefix}-metrics"))
    assert windows == Counter((m["model"], m["version"], m["window_end"], m["count"]) for m in summary.metrics)
    alerts = Counter((d["_source"]["rule"], d["_source"]["window_end"], d["_source"]["state"])
                     for d in elasticsearch.search(f"{prefix}-alerts"))
    assert alerts == Counter((a["rule"], a["window_end"], a["state"]) for a in summary.alerts)
    decisions = elasticsearch.search(f"{prefix}-decisions")
    assert sorted(d["_source"]["event_id"] for d in decisions) == sorted(
        e["event_id"] for e in events if sample(e["event_id"], 0.1))
    logged = next(d["_source"] for d in decisions)
    event = next(e for e in events if e["event_id"] == logged["event_id"])
    assert (logged["model"], logged["version"], logged["timestamp"], logged["latency_ms"], logged["prediction"]) == (
        event["model_id"], event["model_version"], event["timestamp"], event["latency_ms"], event["prediction"])
    indices = elasticsearch.request("GET", f"/_cat/indices/{prefix}-*?format=json")
    assert {i["index"] for i in indices} >= {f"{prefix}-metrics-2026.01.01", f"{prefix}-decisions-2026.01.01"}


def test_alerts_of_a_replay_reach_alertmanager(tmp_path, observability):
    events = _events(_recent_end(), minutes=8, spike=(2, 8))
    config = _setup(tmp_path, events, {"alertmanager": {"url": observability.alertmanager}})
    written = _counter("ampel_sink_writes_total", sink="alertmanager")
    summary = run(config, [str(tmp_path / "events.jsonl")])
    firing = [a for a in summary.alerts if a["rule"] == "latency_p95"]
    assert [a["state"] for a in firing] == ["firing"]
    active = wait_for(lambda: [a for a in observability.am_alerts() if a["labels"]["alertname"] == "AmpelLatencyP95"
                               and a["labels"]["model"] == "alpha"], 10, what="the alert in Alertmanager")
    assert active[0]["labels"]["version"] == "v1" and active[0]["annotations"]["window_end"] == firing[0]["window_end"]
    assert _counter("ampel_sink_writes_total", sink="alertmanager") - written == len(summary.alerts)
