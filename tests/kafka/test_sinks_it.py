"""The whole stack, live: Kafka -> the pipeline on Prism -> Prometheus, Alertmanager (and its
receivers), Elasticsearch; then the same with the sinks' servers down in the middle of the run.

Events are produced in real time (event time = now) in phases: normal, an incident on
alpha/v1 (latency 2 s, feature x shifted), normal again. With 10 s tumbling windows
the incident's alerts fire and resolve while the pipeline runs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import yaml

from ampel_monitor.elastic import sample
from ampel_monitor.window import rfc3339
from ampel_monitor.wire import WireFormat
from tests.kafka.conftest import kafka_config, lines, output, start_pipeline, wait_for
from tests.pipeline.streams import make_events, write_setup
from tests.services import wait_for as poll

pytestmark = pytest.mark.it

AVRO = WireFormat("avro", "PredictionEvent")
DECISION_SAMPLE = 0.25
PIPELINE_METRICS_PORT = 9108  # the scrape target of deploy/prometheus/prometheus.yml


def _config(tmp_path, broker, observability, elasticsearch, prefix: str):
    topics = broker.topics(prefix)
    write_setup(tmp_path, [], {})
    path = kafka_config(tmp_path, topics, {"size": "10s", "slide": "10s", "allowed_lateness": "1m"})
    config = yaml.safe_load(path.read_text())
    fast = {"initial_backoff": "0.2s", "max_backoff": "2s"}
    config["sinks"].update({
        "metrics_port": PIPELINE_METRICS_PORT,
        "prometheus": {"url": f"{observability.prometheus}/api/v1/write", "retry": fast},
        "alertmanager": {"url": observability.alertmanager, "retry": fast},
        "elasticsearch": {"hosts": [elasticsearch.url], "index_prefix": prefix, "retry": fast,
                          "decision_log": {"sample": DECISION_SAMPLE}},
    })
    path.write_text(yaml.safe_dump(config))
    return path, topics


class _Producer(threading.Thread):
    """Produces about 400 events/s, event time = now, following ``phases`` of (seconds, incident)."""

    def __init__(self, broker, topic: str, phases: list[tuple[float, bool]]) -> None:
        super().__init__(daemon=True)
        self.broker, self.topic, self.phases = broker, topic, phases
        self.produced: list[dict] = []
        self.incident_started = threading.Event()

    def run(self) -> None:
        normal = make_events(seed=71, minutes=1, per_minute=600)
        incident = make_events(seed=72, minutes=1, per_minute=600, drift_from=0, spike=(0, 1))
        i = 0
        for seconds, is_incident in self.phases:
            if is_incident:
                self.incident_started.set()
            template = incident if is_incident else normal
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                now = int(time.time() * 1000)
                batch = [{**template[(i + k) % len(template)], "event_id": f"live-{i + k}", "timestamp": now}
                         for k in range(40)]
                i += len(batch)
                self.broker.produce(self.topic, [(e["model_id"], AVRO.encode(e)) for e in batch])
                self.produced.extend(batch)
                time.sleep(0.1)


@pytest.fixture
def pipelines():
    """Starts pipelines; kills any still running when the test ends (a failed test leaves none behind)."""
    started = []

    def start(*args, **kwargs):
        started.append(start_pipeline(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _final_panes(out) -> dict[tuple, dict]:
    final = {}
    for m in lines(out / "metrics.jsonl"):
        final[(m["model"], m["version"], m["window_end"])] = m
    return final


def _epoch_s(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _check_prometheus(observability, out) -> None:
    """Every final window pane is in Prometheus with its values, or dead-lettered with a reason."""
    final = _final_panes(out)
    stored = {}
    for name in ("ampel_predictions", "ampel_latency_p95_seconds"):
        for series in observability.query(f"{name}[30m]"):
            labels = series["metric"]
            for ts, value in series["values"]:
                stored[(name, labels["model"], labels["version"], float(ts))] = float(value)
    rejected = {(d["source"]) for d in lines(out / "dead_letters.jsonl") if d["reason"].startswith("prometheus_")}
    missing = []
    for (model, version, end), m in final.items():
        at = _epoch_s(end)
        if f"prometheus:{model}/{version}@{end}" in rejected:
            continue
        if ("ampel_predictions", model, version, at) not in stored:
            missing.append((model, version, end))
            continue
        assert stored[("ampel_predictions", model, version, at)] == m["count"]
        assert stored[("ampel_latency_p95_seconds", model, version, at)] == pytest.approx(m["latency_ms"]["p95"] / 1000)
    assert not missing, f"windows neither in Prometheus nor dead-lettered: {missing}"


def _check_elasticsearch(elasticsearch, prefix: str, out, produced: list[dict]) -> None:
    """Every window, alert and sampled decision is indexed exactly once, with the final pane's values."""
    final = _final_panes(out)
    docs = elasticsearch.search(f"{prefix}-metrics")
    keys = Counter((d["_source"]["model"], d["_source"]["version"], d["_source"]["window_end"]) for d in docs)
    assert set(keys) == set(final) and max(keys.values()) == 1
    for doc in docs:
        source = doc["_source"]
        assert source["count"] == final[(source["model"], source["version"], source["window_end"])]["count"]
    alerts = lines(out / "alerts.jsonl")
    indexed = Counter((a["_source"]["model"], a["_source"]["version"], a["_source"]["rule"], a["_source"]["severity"],
                       a["_source"]["window_end"], a["_source"]["state"]) for a in elasticsearch.search(f"{prefix}-alerts"))
    assert indexed == Counter((a["model"], a["version"], a["rule"], a["severity"], a["window_end"], a["state"]) for a in alerts)
    _check_counts(out, final, produced)
    decisions = Counter(d["_source"]["event_id"] for d in elasticsearch.search(f"{prefix}-decisions"))
    expected = {e["event_id"] for e in produced if sample(e["event_id"], DECISION_SAMPLE)}
    assert max(decisions.values()) == 1
    assert set(decisions) == expected, (f"{len(expected - set(decisions))} sampled decisions missing, "
                                        f"{len(set(decisions) - expected)} unexpected")


def _check_counts(out, final: dict[tuple, dict], produced: list[dict]) -> None:
    """Every window counts exactly the events produced into it (10 s tumbling windows)."""
    expected = Counter((e["model_id"], e["model_version"], rfc3339(e["timestamp"] // 10_000 * 10_000 + 10_000))
                       for e in produced)
    counted = {key: m["count"] for key, m in final.items()}
    differ = {key: (n, counted.get(key)) for key, n in sorted(expected.items()) if counted.get(key) != n}
    differ.update({key: (None, n) for key, n in counted.items() if key not in expected})
    dead = Counter(d["reason"] for d in lines(out / "dead_letters.jsonl"))
    assert not differ, f"windows (model, version, end): (produced, counted) {differ}; dead letters {dict(dead)}"


def _notices(receivers, path: str, alertname: str) -> list[tuple[str, dict]]:
    """(status, alert) of every alert with ``alertname`` in the webhook posts to ``path``."""
    return [(alert["status"], alert) for body in receivers.posts(path) for alert in body.get("alerts", [])
            if alert["labels"].get("alertname") == alertname]


def test_alerts_reach_pager_chat_and_email_and_windows_reach_prometheus_and_elasticsearch(
        tmp_path, broker, prism_args, observability, elasticsearch, receivers, pipelines):
    prefix = "live-stack"
    started = time.time()
    config, topics = _config(tmp_path, broker, observability, elasticsearch, prefix)
    receivers.clear()
    out = tmp_path / "out"
    process = pipelines(config, out, prism_args, stop_when_idle=20)
    producer = _Producer(broker, topics["predictions"], [(12, False), (25, True), (30, False)])
    time.sleep(8)  # let the runner start reading
    producer.start()

    # the incident pages, then resolves, while the pipeline runs
    wait_for(lambda: any(s == "firing" for s, _ in _notices(receivers, "/pager", "AmpelLatencyP95")), 120,
             "the pager to receive the latency alert", process)
    scraped = observability.query('up{job="ampel-pipeline"}')
    poll(lambda: any(s == "resolved" for s, _ in _notices(receivers, "/pager", "AmpelLatencyP95")), 120,
         what="the pager to receive the resolution")
    producer.join(timeout=120)
    process.wait(timeout=240)
    assert process.returncode == 0, output(process)

    alerts = lines(out / "alerts.jsonl")
    fired = next(a for a in alerts if a["rule"] == "latency_p95" and a["model"] == "alpha" and a["state"] == "firing")
    status, paged = next((s, a) for s, a in _notices(receivers, "/pager", "AmpelLatencyP95") if s == "firing")
    assert {k: paged["labels"][k] for k in ("model", "version", "rule", "severity")} == {
        "model": "alpha", "version": "v1", "rule": "latency_p95", "severity": "critical"}
    assert float(paged["annotations"]["value"]) == pytest.approx(fired["value"], rel=1e-5)
    assert paged["annotations"]["window_end"] == fired["window_end"]

    # warning (data drift) to the chat webhook, Slack-format, firing then resolved
    def chat_titles() -> list[str]:
        return [a["title"] for body in receivers.posts("/chat") for a in body["attachments"] if "AmpelDataDrift" in a["title"]]

    poll(lambda: any(t.startswith("[RESOLVED]") for t in chat_titles()), 30, what="the chat resolution")
    assert any(t.startswith("[FIRING") for t in chat_titles())
    chat = [attachment for body in receivers.posts("/chat") for attachment in body["attachments"]]
    drift = next(a for a in alerts if a["rule"] == "data_drift" and a["version"] == "v1" and a["state"] == "firing")
    assert any(f"value={drift['value']:.6g}" in c["text"] and "version=v1" in c["text"] for c in chat)

    # info (feature drift) to the e-mail receiver
    poll(lambda: any("AmpelFeatureDrift" in m["Subject"] and "RESOLVED" in m["Subject"] for m in receivers.mails),
         30, what="the e-mail resolution of the info alert")
    subjects = [m["Subject"] for m in receivers.mails if "AmpelFeatureDrift" in m["Subject"]]
    assert any("FIRING" in s for s in subjects)

    _check_prometheus(observability, out)
    _check_elasticsearch(elasticsearch, prefix, out, producer.produced)
    # the pipeline's own counters were scraped from its /metrics
    assert scraped and scraped[0]["value"][1] == "1"
    # (only samples of this run: the same target may have served another process's counters before)
    span = int(time.time() - started) + 1
    events = observability.query(f'max_over_time(ampel_events_total{{job="ampel-pipeline"}}[{span}s])')
    assert events and 0 < sum(float(e["value"][1]) for e in events) <= len(producer.produced)
    assert not [d for d in lines(out / "dead_letters.jsonl")], "nothing should be dead-lettered"


def test_results_survive_elasticsearch_prometheus_and_alertmanager_outages(
        tmp_path, broker, prism_args, observability, elasticsearch, receivers, pipelines):
    """Elasticsearch down 30 s, Prometheus stopped and restarted, Alertmanager down while the
    incident fires: afterwards every window and alert is in Elasticsearch exactly once, every
    window in Prometheus (or dead-lettered), and the page arrives."""
    prefix = "live-outage"
    config, topics = _config(tmp_path, broker, observability, elasticsearch, prefix)
    receivers.clear()
    out = tmp_path / "out"
    process = pipelines(config, out, prism_args, stop_when_idle=60)
    producer = _Producer(broker, topics["predictions"], [(15, False), (20, True), (35, False)])
    time.sleep(8)
    producer.start()
    wait_for(lambda: len(lines(out / "metrics.jsonl")) >= 3, 90, "the first windows", process)
    poll(lambda: elasticsearch.search(f"{prefix}-metrics"), 60, what="windows in Elasticsearch before the outage")
    elasticsearch.stop()
    observability.stop_prometheus()
    observability.stop_alertmanager()
    down = time.monotonic()
    assert producer.incident_started.wait(timeout=60)
    incident = time.monotonic()
    # the sinks block while they retry: wait by the clock, not for the pipeline's files
    time.sleep(max(30 - (time.monotonic() - down), 15 - (time.monotonic() - incident), 0.0))
    assert receivers.posts("/pager") == []
    back = time.time()
    observability.start()
    elasticsearch.start()
    wait_for(lambda: any(s == "firing" for s, _ in _notices(receivers, "/pager", "AmpelLatencyP95")), 180,
             "the page once Alertmanager is back", process)
    producer.join(timeout=120)
    process.wait(timeout=300)
    assert process.returncode == 0, output(process)

    fired = next(a for a in lines(out / "alerts.jsonl") if a["rule"] == "latency_p95" and a["state"] == "firing")
    assert _epoch_s(fired["window_end"]) < back, "the alert fired while Alertmanager was down"
    _check_elasticsearch(elasticsearch, prefix, out, producer.produced)
    _check_prometheus(observability, out)
    assert not [d for d in lines(out / "dead_letters.jsonl") if d["reason"].endswith("_unavailable")]
