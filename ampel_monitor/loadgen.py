"""``ampel-monitor loadgen``: produce a live stream of predictions, labels and resource samples.

Traffic is that of the demo scenario (``ampel_monitor.demo_data``: three models, their
features and outputs, without attributions), stamped with the wall-clock time as it is produced, paced to
``rate`` events per second. Each second of traffic is drawn at once with numpy as
columns, encoded (Avro in bulk by ``avro_writer``, JSON record by record) and handed to
one confluent-kafka producer, keyed by model (each model's events in one partition, in
order) or by event id (``key="event"``: every model's events spread over every partition,
each label in its prediction's). A share of the predictions gets its label
``label_delay`` seconds later on the labels topic (or after a delay drawn uniformly from
``label_delay_min`` to ``label_delay``); every host of every model reports a resource
sample every 15 s.

Scenarios: ``steady`` (no incident), ``drift`` (credit-risk's inputs drift from 55 %
of the run on), ``latency-spike``, ``errors`` (an error burst), ``mixed`` (all four
incidents of the demo, resource pressure included).
"""

from __future__ import annotations

import heapq
import itertools
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np
from confluent_kafka import KafkaException, Producer

from ampel_monitor.avro_writer import encode_labels, encode_predictions
from ampel_monitor.config import KafkaTopics
from ampel_monitor.demo_data import _columns, _incidents, _resources, _split
from ampel_monitor.wire import TOPIC_SCHEMAS, WireFormat

__all__ = ["KEYS", "SCENARIOS", "LoadgenStats", "run_loadgen"]

#: Scenario name to the demo incidents it injects.
SCENARIOS = {
    "steady": (),
    "drift": ("drift",),
    "latency-spike": ("latency_spike",),
    "errors": ("error_burst",),
    "mixed": ("drift", "latency_spike", "error_burst", "resource_pressure"),
}
#: What predictions and labels are keyed by (resource samples always by model).
KEYS = ("model", "event")
_RESOURCE_PERIOD_S = 15


@dataclass(frozen=True)
class LoadgenStats:
    """What a run produced."""

    predictions: int
    labels: int
    resources: int
    seconds: float

    @property
    def rate(self) -> float:
        """Prediction events per second achieved."""
        return self.predictions / self.seconds if self.seconds else 0.0


def _produce(producer: Producer, topic: str, value: bytes, key: str) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # the local queue is full: let librdkafka send, then retry
            producer.poll(0.05)


def _encoder(wire: WireFormat, bulk: Callable[[Any, bytes], list[bytes]]) -> Callable[[Any], list[bytes]]:
    """Encodes columns (``avro_writer.Predictions`` or ``Labels``): Avro in bulk, JSON one record after another."""
    prefix = wire.bulk_prefix
    if prefix is None:
        encode = wire.encoder()
        return lambda columns: [encode(record) for record in columns.records()]
    return lambda columns: bulk(columns, prefix)


def run_loadgen(
    client_config: Mapping[str, str],
    rate: float,
    duration: float,
    scenario: str = "steady",
    wire: str = "avro",
    confluent: bool = False,
    topics: KafkaTopics = KafkaTopics(),
    label_delay: float = 60.0,
    labelled_fraction: float = 0.5,
    label_delay_min: float | None = None,
    seed: int = 7,
    pace: bool = True,
    out: TextIO = sys.stderr,
    key: str = "model",
) -> LoadgenStats:
    """Produces ``rate`` events per second for ``duration`` seconds; returns what was sent.

    Args:
        client_config: librdkafka properties (``bootstrap.servers``, security settings).
        rate: prediction events per second.
        duration: seconds of traffic.
        scenario: one of ``SCENARIOS``.
        wire: "avro" or "json".
        confluent: Avro with the Confluent framing (schema ids 1, 2, 3 for predictions,
            labels and resource samples).
        topics: the topic names.
        label_delay: seconds between a prediction and its label (with
            ``label_delay_min``, the longest).
        labelled_fraction: the share of predictions that get a label.
        label_delay_min: when given, each label's delay is drawn uniformly between it and
            ``label_delay`` (labels then arrive out of their predictions' order).
        seed: the seed of the traffic.
        pace: wait for the wall clock (False: produce as fast as possible, for benchmarks).
        out: where progress goes.
        key: one of ``KEYS``: the message key of predictions and labels, the model id or
            the event id.

    Raises:
        ValueError: for an unknown scenario or format, or out-of-range numbers.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {scenario!r}")
    if key not in KEYS:
        raise ValueError(f"key must be one of {list(KEYS)}, got {key!r}")
    if rate <= 0 or duration <= 0:
        raise ValueError(f"rate and duration must be positive, got {rate!r} and {duration!r}")
    if not 0.0 <= labelled_fraction <= 1.0:
        raise ValueError(f"labelled_fraction must be within [0, 1], got {labelled_fraction!r}")
    shortest = label_delay if label_delay_min is None else label_delay_min
    if not 0.0 <= shortest <= label_delay:
        raise ValueError(f"label delays must satisfy 0 <= label_delay_min <= label_delay, got {shortest!r} and "
                         f"{label_delay!r}")
    formats = {kind: WireFormat(wire, schema, confluent, schema_id) for kind, (schema, schema_id) in TOPIC_SCHEMAS.items()}
    producer = Producer({"linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True,
                         "queue.buffering.max.messages": 1_000_000, **client_config})
    rng = np.random.default_rng(seed)
    started = time.time()
    start_ms = int(started * 1000)
    end_ms = start_ms + int(duration * 1000)
    incidents = {kind: incident for kind, incident in _incidents(start_ms, end_ms).items()
                 if kind in SCENARIOS[scenario]}
    pending: list[tuple[int, int, bytes, str]] = []  # labels waiting for their time: a heap by (time, order)
    sent = {"predictions": 0, "labels": 0, "resources": 0}
    encode_resource = formats["resources"].encoder()
    encode_events = _encoder(formats["predictions"], encode_predictions)
    encode_truth = _encoder(formats["labels"], encode_labels)
    produce, topic = producer.produce, topics.predictions
    delay_ms = (int(shortest * 1000), int(label_delay * 1000))
    order = itertools.count()  # ties in time leave the heap in the order labels were made
    carry = 0.0
    for tick in range(int(np.ceil(duration))):
        begin = start_ms + tick * 1000
        finish = min(begin + 1000, end_ms)
        carry += rate * (finish - begin) / 1000
        n, carry = int(carry), carry - int(carry)
        if n:
            events, truth = _columns(rng, _split(n), begin, finish, incidents, attributions=False)
            labels = truth.take(rng.random(n) < labelled_fraction)
            delays = delay_ms[1] if delay_ms[0] == delay_ms[1] else rng.integers(*delay_ms, endpoint=True,
                                                                                  size=labels.timestamp.size)
            labels = replace(labels, timestamp=labels.timestamp + delays)
            keys = events.event_id if key == "event" else events.model_id
            for value, message_key in zip(encode_events(events), events.strings.text(keys).tolist()):
                try:
                    produce(topic, value, message_key)
                except BufferError:  # the local queue is full
                    _produce(producer, topic, value, message_key)
            label_keys = labels.strings.text(labels.event_id if key == "event" else labels.model_id).tolist()
            for row in zip(labels.timestamp.tolist(), order, encode_truth(labels), label_keys):
                heapq.heappush(pending, row)
            sent["predictions"] += n
        if tick % _RESOURCE_PERIOD_S == 0:  # one sample per host, stamped now
            for sample in _resources(rng, begin, begin + _RESOURCE_PERIOD_S * 1000, incidents):
                sample["timestamp"] = begin
                _produce(producer, topics.resources, encode_resource(sample), sample["model_id"])
                sent["resources"] += 1
        now_ms = int(time.time() * 1000) if pace else finish
        while pending and pending[0][0] <= now_ms:
            _, _, value, message_key = heapq.heappop(pending)
            _produce(producer, topics.labels, value, message_key)
            sent["labels"] += 1
        producer.poll(0)
        if pace:
            ahead = (begin + 1000) / 1000 - time.time()
            if ahead > 0:
                time.sleep(ahead)
        if tick % 10 == 9:
            elapsed = time.time() - started
            out.write(f"  {sent['predictions']:,} events in {elapsed:.0f} s ({sent['predictions'] / elapsed:,.0f}/s)\n")
    if pace:  # labels still due within the label delay after the last prediction
        while pending:
            wait = pending[0][0] / 1000 - time.time()
            if wait > 0:
                time.sleep(min(wait, 1.0))
                producer.poll(0)
                continue
            _, _, value, message_key = heapq.heappop(pending)
            _produce(producer, topics.labels, value, message_key)
            sent["labels"] += 1
    else:
        for _, _, value, message_key in sorted(pending):
            _produce(producer, topics.labels, value, message_key)
            sent["labels"] += 1
    remaining = producer.flush(60)
    if remaining:
        raise KafkaException(f"{remaining} messages were not delivered within 60 s")
    elapsed = time.time() - started
    return LoadgenStats(sent["predictions"], sent["labels"], sent["resources"], elapsed)
