"""The load generator against the real broker: what it says it sent is on the topics, decodable."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ampel_monitor.config import KafkaTopics
from ampel_monitor.events import EventDecoder, ModelSchema, decode_resources
from ampel_monitor.loadgen import run_loadgen
from ampel_monitor.wire import WireFormat
from tests.kafka.conftest import BOOTSTRAP

pytestmark = pytest.mark.it


@pytest.mark.parametrize("wire, confluent, shortest, key", [("avro", True, None, "model"), ("json", False, 0.25, "event")])
def test_loadgen_sends_what_it_reports(broker, wire, confluent, shortest, key):
    names = broker.topics(f"loadgen-{wire}")
    topics = KafkaTopics(names["predictions"], names["labels"], names["resources"], names["alerts"], names["dead_letters"])
    stats = run_loadgen({"bootstrap.servers": BOOTSTRAP}, rate=400, duration=4, scenario="mixed", wire=wire,
                        confluent=confluent, topics=topics, label_delay=1.0, labelled_fraction=0.5, seed=3,
                        label_delay_min=shortest, key=key)
    assert stats.predictions == 1600

    predictions = broker.consume_all(names["predictions"])
    labels = broker.consume_all(names["labels"])
    resources = broker.consume_all(names["resources"])
    assert len(predictions) == stats.predictions
    assert len(labels) == stats.labels and 0.4 < stats.labels / stats.predictions < 0.6
    assert len(resources) == stats.resources == 6  # 3 models x 2 hosts, one sample per 15 s

    formats = {kind: WireFormat(wire, schema, confluent, schema_id) for kind, schema, schema_id in
               (("predictions", "PredictionEvent", 1), ("labels", "LabelEvent", 2), ("resources", "ResourceSample", 3))}
    if confluent:
        assert {m.value()[:5] for m in predictions} == {b"\x00\x00\x00\x00\x01"}
    events = [formats["predictions"].decode(m.value()) for m in predictions]
    assert all(m.key().decode() == e["model_id" if key == "model" else "event_id"] for m, e in zip(predictions, events))
    assert Counter(e["model_id"] for e in events) == {"credit-risk": 640, "fraud-detector": 560, "demand-forecast": 400}
    decoded_labels = [formats["labels"].decode(m.value()) for m in labels]
    by_id = {e["event_id"]: e for e in events}
    delays = [label["timestamp"] - by_id[label["event_id"]]["timestamp"] for label in decoded_labels]
    if key == "event":  # every model in both partitions; a label in its prediction's partition
        partition_of = {e["event_id"]: m.partition() for m, e in zip(predictions, events)}
        assert {(e["model_id"], m.partition()) for m, e in zip(predictions, events)} == {
            (model, p) for model in ("credit-risk", "fraud-detector", "demand-forecast") for p in (0, 1)}
        assert all(m.key().decode() == label["event_id"] and m.partition() == partition_of[label["event_id"]]
                   for m, label in zip(labels, decoded_labels))
    else:  # a model in one partition
        placed = {(e["model_id"], m.partition()) for m, e in zip(predictions, events)}
        assert sorted(model for model, _ in placed) == ["credit-risk", "demand-forecast", "fraud-detector"]
        assert all(m.key().decode() == label["model_id"] for m, label in zip(labels, decoded_labels))
    if shortest is None:
        assert set(delays) == {1000}
    else:  # uniform from 250 to 1000 ms, produced in the order they are due
        assert min(delays) >= 250 and max(delays) <= 1000 and len(set(delays)) > 100
        assert abs(sum(delays) / len(delays) - 625) < 40
        for partition in (0, 1):  # order holds within a partition
            times = [label["timestamp"] for m, label in zip(labels, decoded_labels) if m.partition() == partition]
            assert times == sorted(times)
    schemas = {m: ModelSchema(tuple(k for k, v in by_id[next(i for i, e in by_id.items() if e["model_id"] == m)]
                                    ["features"].items() if not isinstance(v, str)), (), m == "demand-forecast")
               for m in ("credit-risk", "fraud-detector", "demand-forecast")}
    batches, dead = EventDecoder(schemas, 60_000).decode_records([(str(i), e, None) for i, e in enumerate(events)])
    assert [d for d in dead if d.reason != "bad_type"] == []
    samples, dead = decode_resources([(str(i), formats["resources"].decode(m.value()), None)
                                      for i, m in enumerate(resources)], list(schemas), 60_000)
    assert dead == [] and sum(len(b) for b in samples) == 6
    if wire == "json":
        assert json.loads(predictions[0].value())["model_id"] in schemas


@pytest.mark.parametrize("shortest, longest", [(2.0, 1.0), (-1.0, 1.0)])
def test_label_delays_out_of_order_fail_before_anything_is_sent(shortest, longest):
    with pytest.raises(ValueError, match="label_delay_min <= label_delay"):
        run_loadgen({"bootstrap.servers": "127.0.0.1:9"}, rate=10, duration=1, label_delay=longest,
                    label_delay_min=shortest)
