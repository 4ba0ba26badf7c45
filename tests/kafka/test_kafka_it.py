"""The monitor on a real Kafka broker, streaming on Prism and on Flink."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from datetime import datetime

import numpy as np
import pytest
from confluent_kafka import Producer

from ampel_monitor.wire import WireFormat
from drift.profile import ReferenceProfile
from tests.kafka.conftest import BOOTSTRAP, kafka_config, lines, output, start_pipeline, wait_for
from tests.pipeline.streams import START_MS, make_events, write_setup
from tests.pipeline.test_monitor_it import assert_window_matches

pytestmark = pytest.mark.it

MINUTE = 60_000
AVRO = WireFormat("avro", "PredictionEvent")


def recent_events(seed: int, minutes: int, per_minute: int, **incidents) -> tuple[int, list[dict]]:
    """A stream ending about a minute ago, aligned to the minute (Kafka refuses future timestamps)."""
    base = (int(time.time() * 1000) // MINUTE - minutes - 1) * MINUTE
    events = make_events(seed=seed, minutes=minutes, per_minute=per_minute, **incidents)
    for event in events:
        event["timestamp"] += base - START_MS
    return base, events


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class KeepAlive(threading.Thread):
    """Sends an undecodable message to every partition of a topic every few seconds until stopped.

    ``--stop-when-idle`` finishes a partition after so many seconds without messages; these keep
    the partitions read however long a loaded machine takes to write the windows before the test
    sends its late events. Each one is dead-lettered as undecodable and carries no event time.
    """

    def __init__(self, topic: str, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.topic, self.every, self.sent = topic, every, 0
        self._done = threading.Event()

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": BOOTSTRAP})
        partitions = producer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        while not self._done.wait(self.every):
            for partition in partitions:
                producer.produce(self.topic, KEEPALIVE, partition=partition)
            assert producer.flush(30) == 0
            self.sent += len(partitions)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.sent


KEEPALIVE = b"\x07keep-alive"


def latest_panes(metrics: list[dict]) -> dict[tuple, dict]:
    final = {}
    for m in metrics:  # panes are appended in order: the last one of a window wins
        final[(m["model"], m["version"], m["window_end"])] = m
    return final


def check_run(tmp_path, broker, runner_args, prefix):
    base, events = recent_events(seed=51, minutes=6, per_minute=200, spike=(2, 4))
    topics = broker.topics(prefix)
    write_setup(tmp_path, events, {})
    config = kafka_config(tmp_path, topics, {"size": "2m", "slide": "1m", "allowed_lateness": "10m"})
    # out of order within the skew: swap neighbours
    for i in range(0, len(events) - 1, 7):
        events[i], events[i + 1] = events[i + 1], events[i]
    garbage = [("alpha", b"\x07not avro"), ("beta", AVRO.encode({**events[0], "latency_ms": -5.0})),
               (None, None)]
    broker.produce(topics["predictions"], [(e["model_id"], AVRO.encode(e)) for e in events] + garbage)

    out = tmp_path / "out"
    keepalive = KeepAlive(topics["predictions"])
    keepalive.start()
    try:
        process = start_pipeline(config, out, runner_args, stop_when_idle=20)
        last_end = base + 7 * MINUTE
        wait_for(lambda: any(epoch_ms(m["window_end"]) >= last_end for m in lines(out / "metrics.jsonl")), 240,
                 "the last window", process)

        # late within the allowed lateness: a late pane updates the window; too late: dead-lettered
        late = [{**events[5], "event_id": f"late-{i}", "timestamp": base + 5 * MINUTE + 30_000 + i} for i in range(4)]
        too_late = [{**events[6], "event_id": f"too-late-{i}", "timestamp": base - 60 * MINUTE + i} for i in range(3)]
        broker.produce(topics["predictions"], [(e["model_id"], AVRO.encode(e)) for e in late + too_late])
    finally:
        keepalives = keepalive.stop()
    process.wait(timeout=240)
    assert process.returncode == 0, output(process)

    panes = lines(out / "metrics.jsonl")
    final = latest_panes(panes)
    accepted = events + late
    profiles = {m: ReferenceProfile.load(tmp_path / f"{m}.json") for m in ("alpha", "beta")}
    for metrics in final.values():
        assert_window_matches(metrics, accepted, profiles[metrics["model"]], 2 * MINUTE)
    # nothing lost, nothing counted twice: each event is in exactly two windows (size 2m, slide 1m)
    assert sum(m["count"] for m in final.values()) == 2 * len(accepted)
    late_key = (late[0]["model_id"], late[0]["model_version"])
    late_panes = [m for m in panes if m["late"] and (m["model"], m["version"]) == late_key]
    assert {epoch_ms(m["window_end"]) for m in late_panes} == {base + 6 * MINUTE, base + 7 * MINUTE}

    dead = lines(out / "dead_letters.jsonl")
    assert Counter(d["reason"] for d in dead) == {"undecodable": 2 + keepalives, "negative_latency": 1, "too_late": 3}
    assert sum(d["record"] == "base64:" + base64.b64encode(KEEPALIVE).decode() for d in dead) == keepalives
    assert sorted(json.loads(d["record"])["event_id"] for d in dead if d["reason"] == "too_late") == [
        f"too-late-{i}" for i in range(3)]
    undecodable = next(d for d in dead if d["record"] == "base64:" + base64.b64encode(b"\x07not avro").decode())
    assert undecodable["source"].startswith(topics["predictions"] + "/")

    on_topic = [json.loads(m.value()) for m in broker.consume_all(topics["dead_letters"])]
    assert Counter(d["reason"] for d in on_topic) == Counter(d["reason"] for d in dead)
    alerts = [json.loads(m.value()) for m in broker.consume_all(topics["alerts"])]
    assert [(a["model"], a["version"], a["rule"], a["state"]) for a in alerts] == [
        ("alpha", "v1", "latency_p95", "firing"), ("alpha", "v1", "latency_p95", "resolved")]
    return panes


def test_prism_windows_equal_the_offline_computation(tmp_path, broker, prism_args):
    check_run(tmp_path, broker, prism_args, "prism")


def test_flink_windows_equal_the_offline_computation(tmp_path, broker, flink_args):
    check_run(tmp_path, broker, flink_args, "flink")


def test_live_stream_windows_are_progressive_and_survive_a_broker_restart(tmp_path, broker, prism_args):
    """Windows appear as the watermark advances while events flow; a broker restart loses nothing."""
    import threading

    topics = broker.topics("live")
    write_setup(tmp_path, [], {})
    config = kafka_config(tmp_path, topics, {"size": "10s", "slide": "10s", "allowed_lateness": "2m"})
    out = tmp_path / "out"
    # idle long enough to outlast the outage and the producers' reconnection after it
    process = start_pipeline(config, out, prism_args, stop_when_idle=60)
    produced: list[dict] = []
    done = threading.Event()
    seen: list[tuple[float, int]] = []  # (seconds since the producer started, window panes written)

    def produce() -> None:
        template = make_events(seed=61, minutes=1, per_minute=60)
        i = 0
        end = time.monotonic() + 40
        while time.monotonic() < end:
            seen.append((round(time.monotonic() - started, 1), len(lines(out / "metrics.jsonl"))))
            now = int(time.time() * 1000)
            batch = [{**template[(i + k) % len(template)], "event_id": f"live-{i + k}", "timestamp": now}
                     for k in range(40)]
            i += len(batch)
            broker.produce(topics["predictions"], [(e["model_id"], AVRO.encode(e)) for e in batch])
            produced.extend(batch)
            time.sleep(0.1)
        done.set()

    producer = threading.Thread(target=produce)
    time.sleep(8)  # let the runner start reading
    started = time.monotonic()
    producer.start()
    time.sleep(15)
    broker.stop()  # the producer buffers and retries; the consumer reconnects
    time.sleep(5)
    broker.start()
    restarted = time.monotonic() - started
    producer.join(timeout=120)
    assert done.is_set()
    emitted_while_running = len(lines(out / "metrics.jsonl"))
    process.wait(timeout=240)
    assert process.returncode == 0, output(process)

    panes = lines(out / "metrics.jsonl")
    assert emitted_while_running >= 3, ("windows should appear while the stream runs, not only at the end; "
                                        f"(s, panes) as produced: {seen}; broker down at 15 s, up at {restarted:.1f} s")
    final = latest_panes(panes)
    assert sum(m["count"] for m in final.values()) == len(produced)
    per_model = Counter(e["model_id"] for e in produced)
    for model, n in per_model.items():
        assert sum(m["count"] for m in final.values() if m["model"] == model) == n


def test_prism_joins_labels_from_kafka_and_loses_no_prediction(tmp_path, broker, prism_args):
    """Labels (30 minutes after their predictions in event time) read from their topic beside
    the predictions: no prediction comes too late, every window counts each event once, and
    every window's labelled count and accuracy equal the offline join. Labels of no
    prediction are dead letters named by their message (topic/partition@offset)."""
    import subprocess
    import sys

    import numpy as np
    from sklearn.metrics import accuracy_score

    from tests.kafka.conftest import ROOT

    base = (int(time.time() * 1000) // MINUTE - 40) * MINUTE  # predictions 40-34 minutes ago
    events = make_events(seed=71, minutes=6, per_minute=50_000)
    for e in events:
        e["timestamp"] += base - START_MS
    rng = np.random.default_rng(72)
    labelled = [e for e in events if rng.random() < 0.5]
    labels = [{"event_id": e["event_id"], "model_id": e["model_id"], "timestamp": e["timestamp"] + 30 * MINUTE,
               "label": e["prediction"] if rng.random() < 0.8 else "other"} for e in labelled]
    topics = broker.topics("labels")
    write_setup(tmp_path, [], {}, extra={"labels": {"max_delay": "1h", "min_labelled": 1, "min_fraction": 0.0}})
    config = kafka_config(tmp_path, topics, {"size": "2m", "slide": "1m", "allowed_lateness": "1m"})
    labels_wire = WireFormat("avro", "LabelEvent")
    broker.produce(topics["predictions"], [(e["model_id"], AVRO.encode(e)) for e in events])
    orphans = [{"event_id": f"orphan-{i}", "model_id": events[0]["model_id"], "timestamp": base + 30 * MINUTE,
                "label": events[0]["prediction"]} for i in range(3)]
    broker.produce(topics["labels"], [(l["model_id"], labels_wire.encode(l)) for l in labels + orphans])

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "ampel_monitor.cli", "run", "--config", str(config), "--out",
                             str(out), "--stop-at-end", *prism_args], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    where = {labels_wire.decode(m.value())["event_id"]: f"{m.topic()}/{m.partition()}@{m.offset()}"
             for m in broker.consume_all(topics["labels"]) if b"orphan-" in m.value()}
    dead = lines(out / "dead_letters.jsonl")
    assert sorted((d["reason"], json.loads(d["record"])["event_id"], d["source"]) for d in dead) == [
        ("label_without_prediction", f"orphan-{i}", where[f"orphan-{i}"]) for i in range(3)]
    final = latest_panes(lines(out / "metrics.jsonl"))
    expected = Counter()
    for e in events:
        end = e["timestamp"] - e["timestamp"] % MINUTE + MINUTE
        for window_end in (end, end + MINUTE):  # 2-minute windows sliding by one minute
            expected[(e["model_id"], e["model_version"], window_end)] += 1
    counted = {(model, version, epoch_ms(end)): m["count"] for (model, version, end), m in final.items()}
    assert {k: n for k, n in counted.items() if n != expected[k]} == {}
    assert counted.keys() == expected.keys()

    quality: dict = {}
    for q in lines(out / "quality.jsonl"):  # the last pane of each window holds all its labels
        quality[(q["model"], q["version"], q["window_end"])] = q
    assert {k for k in quality} <= set(final)
    by_id = {e["event_id"]: e for e in events}
    label_of = {l["event_id"]: l["label"] for l in labels}
    for (model, version, end), q in quality.items():
        stop = epoch_ms(end)
        pairs = [(label_of[i], by_id[i]["prediction"]) for i in label_of
                 if (by_id[i]["model_id"], by_id[i]["model_version"]) == (model, version)
                 and stop - 2 * MINUTE <= by_id[i]["timestamp"] < stop and by_id[i]["status"] == "ok"]
        assert q["quality"]["labelled"] == len(pairs), (model, version, end)
        assert q["quality"]["accuracy"] == pytest.approx(accuracy_score(*zip(*pairs)), abs=1e-12)
        # every prediction of the window counted once, by the join (the labelled fraction's denominator)
        assert q["quality"]["predictions"] == expected[(model, version, stop)], (model, version, end)
    assert sum(q["quality"]["labelled"] for q in quality.values()) == 2 * sum(
        by_id[l["event_id"]]["status"] == "ok" for l in labels)


def test_prism_runs_the_label_side_in_a_worker_process_whose_counters_reach_metrics(tmp_path, broker, prism_args):
    """On Prism the labels' read, the join and the quality slices run in a worker process
    of their own: its counters (labels joined, labels without prediction) are not this
    process's, yet ``/metrics`` serves them, added to this process's."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from ampel_monitor.config import load_config
    from pipelines.monitor import KafkaSource, run
    from transforms.counters import REGISTRY, served

    base, events = recent_events(seed=81, minutes=3, per_minute=400)
    rng = np.random.default_rng(82)
    labelled = [e for e in events if rng.random() < 0.5]
    labels = [{"event_id": e["event_id"], "model_id": e["model_id"], "timestamp": e["timestamp"] + MINUTE,
               "label": e["prediction"]} for e in labelled]
    orphans = [{"event_id": f"orphan-{i}", "model_id": "beta", "timestamp": base + MINUTE, "label": "x"}
               for i in range(2)]
    topics = broker.topics("label-worker")
    write_setup(tmp_path, [], {}, extra={"labels": {"max_delay": "10m", "min_labelled": 1, "min_fraction": 0.0}})
    config = kafka_config(tmp_path, topics, {"size": "2m", "slide": "1m", "allowed_lateness": "1m"})
    labels_wire = WireFormat("avro", "LabelEvent")
    broker.produce(topics["predictions"], [(e["model_id"], AVRO.encode(e)) for e in events])
    broker.produce(topics["labels"], [(l["model_id"], labels_wire.encode(l)) for l in labels + orphans])

    def samples(text: str) -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def delta(after: dict, before: dict, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    mine_before, served_before = samples(generate_latest(REGISTRY).decode()), samples(generate_latest(served()).decode())
    summary = run(load_config(config), out_dir=str(tmp_path / "out"), beam_args=prism_args,
                  kafka=KafkaSource(stop_at_end=True, labels=True))
    mine, all_processes = samples(generate_latest(REGISTRY).decode()), samples(generate_latest(served()).decode())

    assert sorted(json.loads(d["record"])["event_id"] for d in lines(tmp_path / "out" / "dead_letters.jsonl")) == [
        "orphan-0", "orphan-1"]
    final = {(q["model"], q["version"], q["window_end"]): q for q in summary.quality}  # the last pane holds all
    assert sum(q["quality"]["labelled"] for q in final.values()) == 2 * sum(e["status"] == "ok" for e in labelled)
    for model in ("alpha", "beta"):
        joined = sum(l["model_id"] == model for l in labels)
        assert delta(all_processes, served_before, "ampel_labelled_predictions_total", model=model) == joined
        assert delta(mine, mine_before, "ampel_labelled_predictions_total", model=model) == 0  # not this process's
        # the predictions are read here, and counted here
        assert delta(mine, mine_before, "ampel_events_total", model=model) == sum(e["model_id"] == model for e in events)
    assert delta(all_processes, served_before, "ampel_dead_letter_records_total", reason="label_without_prediction") == 2
    assert delta(mine, mine_before, "ampel_dead_letter_records_total", reason="label_without_prediction") == 0
