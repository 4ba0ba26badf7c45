"""Every panel's queries return data from the real Prometheus and Elasticsearch that a short
pipeline run fed.

The run: ten minutes of recent events (event time ending two minutes ago) of three models
(``credit``: two versions, baseline v1, a sensitive attribute, drift and a latency spike in
its last minutes; ``churn``: a few errors; ``price``: regression), with delayed labels,
resource samples, attributions, a few labels without a prediction, the Prometheus and
Elasticsearch sinks, and an Alertmanager sink whose server is down (so the sink-error
panels have retries and dead letters to show). Late events only happen in a stream: a
short TestStream run adds some. The pipeline's counters are served, from before the run,
on the port the test Prometheus scrapes (deploy/prometheus/prometheus.yml); a counter
panel is polled until two scrapes of the final counts are in.

Each panel's targets are run as Grafana runs them, with every template variable set to all
the run's values: PromQL through /api/v1/query_range over the run's span (instant targets
through /api/v1/query at its end), Elasticsearch targets as ``_search`` on the index of
the panel's provisioned data source.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import numpy as np
import pytest
import yaml
from prometheus_client import start_http_server

from ampel_monitor import elastic
from ampel_monitor.config import WindowConfig, load_config
from ampel_monitor.events import EventDecoder, ModelSchema
from drift.profile import ReferenceProfile
from pipelines.monitor import run
from tests.dashboards.panels import (
    counters,
    interpolate_lucene,
    interpolate_promql,
    leaf_buckets,
    panels,
    search_body,
)
from tests.services import wait_for
from transforms.counters import REGISTRY
from transforms.kafka import gate

pytestmark = pytest.mark.it

MINUTE = 60_000
MODELS = ("credit", "churn", "price")
PIPELINE_METRICS_PORT = 9108  # the scrape target of deploy/prometheus/prometheus.yml
PROVISIONED = {d["uid"]: d for d in yaml.safe_load(
    (elastic.TEMPLATES_DIR.parent / "grafana" / "provisioning" / "datasources" / "ampel.yml").read_text())["datasources"]}
#: The quality, bias, importance and A/B series come from the quality records, which the
#: Prometheus sink writes once these series exist; until then their panels are not run.


def _reference(rng: np.random.Generator, task: str, rows: int = 4000) -> dict:
    x, y = rng.normal(0, 1, rows), rng.exponential(2, rows)
    if task == "regression":
        prediction = 10 + 3 * x + rng.normal(0, 1, rows)
        return {"x": x, "y": y, "prediction": prediction, "label": prediction + rng.normal(0, 2, rows)}
    prediction = rng.choice(np.array(["yes", "no"], dtype=object), rows)
    agree = rng.random(rows) < 0.85
    return {"x": x, "y": y, "prediction": prediction, "confidence": rng.uniform(0.3, 1, rows),
            "label": np.where(agree, prediction, np.where(prediction == "yes", "no", "yes"))}


def _events(end_ms: int, minutes: int = 10, per_minute: int = 360) -> list[dict]:
    rng = np.random.default_rng(11)
    start = end_ms - minutes * MINUTE
    events = []
    for i, offset in enumerate(np.sort(rng.integers(0, minutes * MINUTE, minutes * per_minute))):
        model = MODELS[i % 3]
        version = "v2" if model == "credit" and i % 4 == 0 else "v1"
        incident = model == "credit" and offset // MINUTE >= minutes - 4
        x, y = float(rng.normal(2.0 if incident else 0.0, 1)), float(rng.exponential(2))
        latency = 1500.0 if incident and version == "v1" else float(rng.lognormal(3.5, 0.5))
        failed = model == "churn" and i % 40 == 0
        if model == "price":
            prediction, confidence = float(10 + 3 * x + rng.normal(0, 1)), None
        else:
            prediction, confidence = ("yes" if rng.random() < 0.5 else "no"), float(rng.uniform(0.3, 1))
        events.append({
            "event_id": f"d{i}", "model_id": model, "model_version": version, "timestamp": int(start + offset),
            "latency_ms": latency, "status": "error" if failed else "ok", "error_code": "E1" if failed else None,
            "features": {"x": x, "y": y}, "prediction": prediction, "confidence": confidence,
            "attributes": {"sex": "f" if (i // 3) % 2 else "m"}, "attributions": {"x": 0.6 * x, "y": 0.2 * y},
        })
    return events


def _labels(events: list[dict]) -> list[dict]:
    """Labels for 70 % of the events, 0-90 s after them; ten labels without a prediction."""
    rng = np.random.default_rng(12)
    out = []
    for e in events:
        if rng.random() >= 0.7:
            continue
        if e["model_id"] == "price":
            label = e["prediction"] + float(rng.normal(0, 2))
        else:
            label = e["prediction"] if rng.random() < 0.85 else ("no" if e["prediction"] == "yes" else "yes")
        out.append({"event_id": e["event_id"], "model_id": e["model_id"], "label": label,
                    "timestamp": e["timestamp"] + int(rng.integers(0, 90_000))})
    first = min(e["timestamp"] for e in events)
    return out + [{"event_id": f"ghost-{i}", "model_id": "churn", "label": "yes", "timestamp": first + i * MINUTE}
                  for i in range(10)]


def _resources(start_ms: int, end_ms: int) -> list[dict]:
    rng = np.random.default_rng(13)
    return [{"host": f"{model}-{host}", "model_id": model, "timestamp": ts, "cpu": float(rng.uniform(0.2, 0.9)),
             "memory": float(rng.uniform(0.3, 0.7)), "gpu": float(rng.uniform(0.1, 0.5))}
            for ts in range(start_ms, end_ms, 15_000) for model in MODELS for host in (1, 2)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write(path, records) -> str:
    with path.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return str(path)


def _late_events(model: str = "credit") -> None:
    """Five events whose slice closed, within the lateness, as the Kafka read step judges them."""
    windows = WindowConfig(size=120, slide=60, allowed_lateness=120)
    t0 = 1_767_225_600_000
    profile = ReferenceProfile.build({"x": np.arange(100.0) % 5})
    decoder = EventDecoder({model: ModelSchema.from_profile(profile, "regression")}, windows.slide_ms)
    records = [(f"t:{i}", {"event_id": f"late-{s}-{i}", "model_id": model, "model_version": "v1",
                           "timestamp": t0 + int(s * 1000), "latency_ms": 10.0, "status": "ok",
                           "features": {"x": float(i % 5)}}, None) for i, s in enumerate([30, 31, 32, 33, 34])]
    (late,), dead = decoder.decode_records(records)
    assert not dead and gate(late, t0 + 120_000, windows.slide_ms, windows.lateness_ms) == []


@pytest.fixture(scope="module")
def fed(tmp_path_factory, observability, elasticsearch):
    """Runs the pipeline into the test Prometheus and Elasticsearch; serves its counters to
    the scrape from the start; yields the time span and the template variables' values."""
    tmp = tmp_path_factory.mktemp("dashboards")
    end_ms = (int(time.time() * 1000) // MINUTE - 2) * MINUTE
    events = _events(end_ms)
    rng = np.random.default_rng(10)
    for model, task in (("credit", "classification"), ("churn", "classification"), ("price", "regression")):
        columns = _reference(rng, task)
        ReferenceProfile.build(columns, prediction="prediction", confidence="confidence" if "confidence" in columns else None,
                               label="label", resolution=200).save(tmp / f"{model}.json")
    config = {
        "models": [{"id": "credit", "task": "classification", "reference": str(tmp / "credit.json"),
                    "positive_label": "yes", "sensitive": ["sex"], "baseline_version": "v1"},
                   {"id": "churn", "task": "classification", "reference": str(tmp / "churn.json"),
                    "positive_label": "yes", "sensitive": ["sex"]},
                   {"id": "price", "task": "regression", "reference": str(tmp / "price.json")}],
        "windows": {"size": "2m", "slide": "1m", "allowed_lateness": "0s"},
        "drift": {"min_count": 50},
        "labels": {"max_delay": "3m", "min_labelled": 10, "min_fraction": 0.05},
        "sinks": {
            "out_dir": str(tmp / "out"),
            "prometheus": {"url": f"{observability.prometheus}/api/v1/write"},
            "elasticsearch": {"hosts": [elasticsearch.url], "index_prefix": "ampel", "decision_log": {"sample": 0.2}},
            "alertmanager": {"url": f"http://127.0.0.1:{_closed_port()}",
                             "retry": {"initial_backoff": "0.05s", "max_backoff": "0.1s", "deadline": "0.5s",
                                       "timeout": "0.5s"}},
        },
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    server, thread = wait_for(lambda: start_http_server(PIPELINE_METRICS_PORT, addr="127.0.0.1", registry=REGISTRY),
                              60, what=f"port {PIPELINE_METRICS_PORT} to be free for the pipeline's counters")
    summary = run(load_config(tmp / "config.yaml"), [_write(tmp / "events.jsonl", events)],
                  resources=[_write(tmp / "resources.jsonl", _resources(end_ms - 10 * MINUTE, end_ms))],
                  labels=[_write(tmp / "labels.jsonl", _labels(events))])
    assert summary.alerts and summary.dead_letters["label_without_prediction"] == 10
    assert summary.dead_letters["alertmanager_unavailable"] == len(summary.alerts)
    _late_events()
    elasticsearch.request("POST", "/ampel-*/_refresh")
    versions = sorted({e["model_version"] for e in events})
    yield {"start": (end_ms - 12 * MINUTE) / 1000, "end_ms": end_ms,
           "values": {"model": list(MODELS), "version": versions, "window": ["2m"], "unit_cost": ["1.5"]}}
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _prometheus_results(observability, fed, target) -> list:
    expr = interpolate_promql(target["expr"], fed["values"])
    if target.get("instant"):
        return observability.query(expr)
    now = time.time()
    return observability.query_range(expr, fed["start"], now, 15)


def _elasticsearch_results(elasticsearch, fed, panel, target) -> list:
    index = PROVISIONED[panel.datasource]["jsonData"]["index"]
    body = search_body(target, interpolate_lucene(target["query"], fed["values"]),
                       int(fed["start"] * 1000), int(time.time() * 1000))
    answer = elasticsearch.request("POST", f"/{urllib.parse.quote(index)}/_search", body)
    if "aggs" not in body:
        return answer["hits"]["hits"]
    return [b for b in leaf_buckets(answer["aggregations"]) if b["doc_count"] > 0]


@pytest.mark.parametrize("panel", panels(), ids=str)
def test_every_panel_query_returns_data(panel, fed, observability, elasticsearch):
    scraped = bool(panel.metrics & counters())
    for target in panel.targets:
        if panel.es_kind is not None:
            results = _elasticsearch_results(elasticsearch, fed, panel, target)
        elif scraped:  # the counters come with the scrapes: wait for two
            results = wait_for(lambda: _prometheus_results(observability, fed, target), 90,
                               what=f"{target['expr']} after the scrape")
        else:
            results = _prometheus_results(observability, fed, target)
        assert results, f"{panel} {target.get('refId')}: {target.get('expr') or target.get('query')} returned nothing"
        if "expr" in target:
            values = [float(v) for series in results for _, v in series.get("values", [series.get("value")])]
            assert any(np.isfinite(values)), (panel, target["expr"], results[:2])


def test_the_scraped_counters_are_the_pipelines(fed, observability):
    """What the counter panels read is what the pipeline counted: every counter's newest
    scraped value equals the value in its registry."""
    expected = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                expected[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert {name for name, _ in expected} == counters()

    def scraped():
        found = {}
        for series in observability.query('{__name__=~"ampel_.+_total", job="ampel-pipeline"}'):
            labels = {k: v for k, v in series["metric"].items() if k not in ("__name__", "job", "instance")}
            found[(series["metric"]["__name__"], tuple(sorted(labels.items())))] = float(series["value"][1])
        return found if found == expected else None

    assert wait_for(scraped, 60, what="a scrape of the final counts") == expected
