"""Kafka in and out: a splittable-DoFn source per topic-partition, and a producer sink.

The source (``ReadFromKafka``)::

    Impulse ─ Partitions (list topics, resolve start offsets) ─ Reshuffle ─ ReadPartition (SDF)
                                                                              ├─ (model, batch), timestamped
                                                                              ├─ labels: (model, LabelBatch)
                                                                              └─ dead letters

* One element per topic-partition; its restriction is an offset range
  ``[start, stop)`` (``stop`` is unbounded unless ``stop_at_end``). The DoFn claims
  each offset it emits, so a restart resumes exactly after the last checkpoint.
* Each call polls messages in bulk for up to about a second (up to five while every poll
  comes back full: a backlog), decodes them together (up to 50,000 at a time) into the
  pipeline's batches, then checkpoints (``defer_remainder``) so the runner can commit
  progress and move the watermark.
* The watermark of a partition trails the largest event time read from it by
  ``watermark_skew``; a partition idle for ``idle_timeout``, and read to the end the
  broker reports, advances it to the wall clock minus the skew, so quiet partitions do
  not hold windows back (an unreachable broker is not idleness). A partition never
  reports more than the slowest partition of its read step in the same worker
  (``_StepWatermarks``).
* Start positions: earliest, latest, committed (the consumer group's offset, else
  earliest) or a timestamp. Offsets read are committed to the group (asynchronously)
  for lag monitoring only: the runner's checkpoints, not the group, decide where a
  restarted job resumes.
* Undecodable messages, and records that fail validation, go to the dead-letter
  output with the reason, ``topic/partition@offset`` and the original bytes
  (base64 for Avro); the job never stops on bad input.
* Lateness is decided here, where the watermark is known: a batch of predictions or
  resource samples whose slice's allowed lateness is over at the watermark the
  partition reports becomes ``too_late`` dead letters, one a record (``gate``); one of
  a slice the watermark has passed, within the lateness, is counted late and passes.
  The runner's watermark downstream is never ahead of what the partition last
  reported, and the window stages allow two slides more lateness, so the windows never
  drop what passes (``docs/pipeline.md``).

Credentials come from ``KafkaConfig.client_config`` (environment or file) when the
consumer starts on the worker, never from pipeline options or logs.
"""

from __future__ import annotations

import bisect
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.iobase import WatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from ampel_monitor import avro_columns
from ampel_monitor.config import KafkaConfig
from ampel_monitor.events import Batch, DeadLetter, EventBatch, EventDecoder, ModelSchema, decode_resources
from ampel_monitor.labels import LabelBatch, Offsets
from ampel_monitor.wire import TOPIC_SCHEMAS, WireFormat, decode_label_messages, decode_predictions
from transforms.counters import count_dead_letter, count_events, count_late
from transforms.coders import BatchCoder  # noqa: F401 (registers the coder of batches)
from transforms.read import DEAD

__all__ = ["LABELS", "KafkaPartition", "ReadFromKafka", "WriteToKafka", "gate"]

#: The tag of the read step's labels output.
LABELS = "labels"

_LOG = logging.getLogger(__name__)
_UNBOUNDED = sys.maxsize
#: How long a call reads: about a second while the partition is caught up (the runner
#: then moves the watermark and commits progress), up to ``_BACKLOG_SECONDS`` while every
#: poll comes back full. A runner takes its time to hand a deferred remainder back (Flink
#: 1.19 with Beam 2.62: 1.3-1.8 s between calls), so short calls over a backlog leave the
#: worker idle most of the time.
_BUNDLE_SECONDS = 1.0
_BACKLOG_SECONDS = 5.0
_POLL_SECONDS = 0.2
#: Claimed messages decoded together (at most; a call's last ones may be fewer).
_DECODE_MESSAGES = 50_000

@dataclass(frozen=True)
class KafkaPartition:
    """One partition to read: what it carries, where, and from which offset."""

    kind: str
    topic: str
    partition: int
    start: int
    stop: int = _UNBOUNDED
    #: Every (topic, partition) of the read step, this one included.
    siblings: tuple[tuple[str, int], ...] = ()


def _consumer(kafka: KafkaConfig) -> Consumer:
    return Consumer({
        "group.id": kafka.group_id,
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        # librdkafka pauses a partition's fetching for fetch.queue.backoff.ms (1 s) once
        # its queue holds queued.min.messages, and the broker holds a fetch at the end of
        # a partition for fetch.wait.max.ms (500 ms): reading a backlog, both halve the rate
        "fetch.queue.backoff.ms": 10,
        "fetch.wait.max.ms": 100,
        **kafka.client_config(),
    })


class _PartitionsDoFn(beam.DoFn):
    """Lists the partitions of the input topics and resolves where each one starts."""

    def __init__(self, kafka: KafkaConfig, kinds: tuple[str, ...], stop_at_end: bool) -> None:
        self._kafka, self._kinds, self._stop_at_end = kafka, kinds, stop_at_end

    def process(self, _: Any) -> Iterator[KafkaPartition]:
        consumer = _consumer(self._kafka)
        try:
            found = []
            for kind in self._kinds:
                topic = getattr(self._kafka.topics, kind)
                metadata = consumer.list_topics(topic, timeout=30)
                described = metadata.topics.get(topic)
                if described is None or described.error is not None or not described.partitions:
                    raise ValueError(f"kafka topic {topic!r} ({kind}) does not exist: {described and described.error}")
                for partition in sorted(described.partitions):
                    start, stop = self._positions(consumer, topic, partition)
                    found.append((kind, topic, partition, start, stop if self._stop_at_end else _UNBOUNDED))
        finally:
            consumer.close()
        siblings = tuple((topic, partition) for _, topic, partition, _, _ in found)
        for kind, topic, partition, start, stop in found:
            yield KafkaPartition(kind, topic, partition, start, stop, siblings)

    def _positions(self, consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        mode = self._kafka.start
        if mode == "earliest":
            return low, high
        if mode == "latest":
            return high, high
        if mode == "timestamp":
            (found,) = consumer.offsets_for_times(
                [TopicPartition(topic, partition, self._kafka.start_timestamp_ms)], timeout=30)
            return (high if found.offset < 0 else found.offset), high
        (committed,) = consumer.committed([TopicPartition(topic, partition)], timeout=30)
        return (committed.offset if committed.offset >= 0 else low), high


class _OffsetTracker(OffsetRestrictionTracker):
    """Offsets of one partition: splits only to checkpoint (at the current position).

    A runner splitting an unbounded range in the middle would hand offsets far beyond
    the partition's end to another reader; a partition is read by one reader at a time.
    """

    def try_split(self, fraction_of_remainder: float) -> tuple[OffsetRange, OffsetRange] | None:
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)


class _OffsetProvider(RestrictionProvider):
    def initial_restriction(self, element: KafkaPartition) -> OffsetRange:
        return OffsetRange(element.start, max(element.start, element.stop))

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _OffsetTracker(restriction)

    def restriction_size(self, element: KafkaPartition, restriction: OffsetRange) -> int:
        return 1 if restriction.stop == _UNBOUNDED else restriction.stop - restriction.start

    def truncate(self, element: KafkaPartition, restriction: OffsetRange) -> OffsetRange | None:
        return None if restriction.stop == _UNBOUNDED else restriction


class _PartitionWatermark(WatermarkEstimator):
    """A partition's watermark: its own estimate, held to the slowest of its read step.

    The state keeps both, epoch ms: the partition's own estimate (the newest event time
    read less the skew, or the clock's less the skew once idle; it never goes back) and
    the watermark reported, the smallest own estimate among the step's partitions
    (``_StepWatermarks``). A call puts the own estimate among the step's: taken for the
    partition's own, the held watermark would feed the step's minimum back into itself,
    and with partitions read side by side it kept the watermark where it was while
    events flowed.
    """

    def __init__(self, state: tuple[int, int]) -> None:
        self._own_ms, self._held_ms = state

    def observe_timestamp(self, timestamp: Timestamp) -> None:
        pass

    def current_watermark(self) -> Timestamp:
        return Timestamp(micros=self._held_ms * 1000)

    def get_estimator_state(self) -> tuple[int, int]:
        return self._own_ms, self._held_ms

    def own(self) -> int:
        """The partition's own estimate (the runner's wrapper passes on methods only)."""
        return self._own_ms

    def hold(self, own_ms: int, held_ms: int) -> None:
        self._own_ms, self._held_ms = max(self._own_ms, own_ms), max(self._held_ms, held_ms)


class _WatermarkProvider(WatermarkEstimatorProvider):
    """Estimates starting at the epoch (a fresh partition has nothing to hold back)."""

    def initial_estimator_state(self, element: KafkaPartition, restriction: OffsetRange) -> tuple[int, int]:
        return 0, 0

    def create_watermark_estimator(self, state: tuple[int, int]) -> _PartitionWatermark:
        return _PartitionWatermark(state)


class _StepWatermarks:
    """The watermark estimates of the partitions each read step is reading in this worker.

    A partition reports the smallest estimate among its step's partitions, not its own.
    Prism (Beam 2.77) takes a read step's output watermark from the partition whose bundle
    ended last rather than the minimum over all of them: a partition ahead in event time
    (a smaller one, or one of labels, which trail their predictions by the label delay)
    then moved the watermark past events another partition had not read yet, and those
    came too late. Holding every partition to the slowest is always safe: a watermark may
    lag the data, never lead it. An estimate not refreshed for ``stale_seconds`` (its
    partition is read elsewhere now, or gone) no longer holds the others back; nor does a
    sibling partition never heard of in this worker after ``unheard_seconds``.
    """

    def __init__(self, stale_seconds: float = 30.0, unheard_seconds: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, dict[tuple[str, int], tuple[int, float]]] = {}
        self._finished: dict[str, set[tuple[str, int]]] = {}
        self._stale, self._unheard = stale_seconds, unheard_seconds

    def report(self, step: str, partition: tuple[str, int], epoch_ms: int,
               siblings: tuple[tuple[str, int], ...] = ()) -> int:
        """Records a partition's estimate; returns the step's smallest.

        Siblings not heard of yet count as at the epoch (they have read nothing so far) for
        ``unheard_seconds``: long enough for a runner to start reading every partition it
        holds, short enough not to hold a worker long for partitions read by another one.
        """
        now = time.monotonic()
        with self._lock:
            partitions = self._steps.setdefault(step, {})
            finished = self._finished.setdefault(step, set())
            for sibling in siblings:
                if sibling not in partitions and sibling not in finished:
                    partitions[sibling] = (0, now - self._stale + self._unheard)
            partitions[partition] = (epoch_ms, now)
            return min(ms for ms, seen in partitions.values() if now - seen < self._stale)

    def done(self, step: str, partition: tuple[str, int]) -> None:
        """A partition read to its end holds nothing back any more."""
        with self._lock:
            self._steps.get(step, {}).pop(partition, None)
            self._finished.setdefault(step, set()).add(partition)


_WATERMARKS = _StepWatermarks()


class _Quiet:
    """How long each partition has been read to the same offset, as seen by one reader.

    Counted from the offset, not from the last message this reader claimed: a runner hands
    a partition's restriction to any of its worker's DoFn instances, and one that read the
    partition long ago must not take the messages others have read since for silence (it
    would finish the partition, ``stop_when_idle``, in the middle of the stream).
    """

    def __init__(self) -> None:
        self._since: dict[tuple[str, int], tuple[int, float]] = {}

    def seconds(self, partition: tuple[str, int], offset: int, now: float) -> float:
        """Seconds since this reader first found ``partition`` with nothing after ``offset``."""
        offset_then, since = self._since.get(partition, (None, now))
        if offset_then != offset:
            self._since[partition] = (offset, now)
            return 0.0
        return now - since


class _Claimed:
    """Claimed messages of a partition as their offsets (ascending) and values.

    A ``confluent_kafka.Message`` is tracked by the garbage collector: tens of thousands of
    them held until they were decoded outlived the young generations and set off full
    collections of the whole heap. Offsets and bytes are not tracked. The consume calls of
    a 1.5M-message replay took 2.8 s of CPU with the messages held, 1.7 s without (their
    loop included), 0.6 s with ``pipelines.worker_pool.tune_gc`` as well.

    >>> claimed = _Claimed()
    >>> for offset in (3, 4, 7):
    ...     claimed.add(offset, b"m%d" % offset)
    >>> kept = claimed.before(7)
    >>> kept.offsets, kept.values, len(claimed)
    ([3, 4], [b'm3', b'm4'], 3)
    """

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.values: list[bytes | None] = []  # None: a message without a value

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, offset: int, value: bytes | None) -> None:
        self.offsets.append(offset)
        self.values.append(value)

    def extend(self, other: _Claimed) -> None:
        self.offsets += other.offsets
        self.values += other.values

    def before(self, stop: int) -> _Claimed:
        """Those with an offset below ``stop``."""
        kept, n = _Claimed(), bisect.bisect_left(self.offsets, stop)
        kept.offsets, kept.values = self.offsets[:n], self.values[:n]
        return kept


class _ReadPartitionDoFn(beam.DoFn):
    def __init__(self, kafka: KafkaConfig, schemas: Mapping[str, ModelSchema], slide_ms: int, lateness_ms: int,
                 stop_when_idle: float | None, step: str) -> None:
        self._kafka, self._schemas, self._slide_ms, self._lateness_ms = kafka, dict(schemas), slide_ms, lateness_ms
        self._stop_when_idle, self._step = stop_when_idle, step
        self._skew_ms = int(kafka.watermark_skew * 1000)

    def setup(self) -> None:
        self._consumers: dict[tuple[str, int], tuple[Consumer, int]] = {}
        self._quiet = _Quiet()
        self._decoder = EventDecoder(self._schemas, self._slide_ms)
        avro_columns.load_kernels()
        self._wire = {kind: WireFormat(self._kafka.format, schema, self._kafka.confluent, schema_id,
                                       self._kafka.schema_ids)
                      for kind, (schema, schema_id) in TOPIC_SCHEMAS.items()}

    def teardown(self) -> None:
        for consumer, _ in self._consumers.values():
            consumer.close()
        self._consumers.clear()

    def _consumer_at(self, element: KafkaPartition, offset: int) -> Consumer:
        key = (element.topic, element.partition)
        cached = self._consumers.get(key)
        if cached is not None and cached[1] == offset:
            return cached[0]
        if cached is None:
            consumer = _consumer(self._kafka)
        else:
            consumer = cached[0]
        consumer.assign([TopicPartition(element.topic, element.partition, offset)])
        self._consumers[key] = (consumer, offset)
        return consumer

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: KafkaPartition,
        tracker: RestrictionTrackerView = beam.DoFn.RestrictionParam(_OffsetProvider()),
        watermark: _PartitionWatermark = beam.DoFn.WatermarkEstimatorParam(_WatermarkProvider()),
    ) -> Iterator[Any]:
        restriction = tracker.current_restriction()
        key = (element.topic, element.partition)
        next_offset = restriction.start
        if next_offset >= restriction.stop:
            _WATERMARKS.done(self._step, key)
            return
        self._resume(watermark, key, element.siblings)
        consumer = self._consumer_at(element, next_offset)
        started = time.monotonic()
        deadline = started + _BUNDLE_SECONDS
        pending = _Claimed()  # claimed, not yet decoded: decoded together, into fewer and larger batches
        while time.monotonic() < deadline:
            messages = consumer.consume(self._kafka.max_poll_records, timeout=_POLL_SECONDS)
            claimed, ended, read = _Claimed(), False, len(messages)
            deadline = started + (_BACKLOG_SECONDS if read >= self._kafka.max_poll_records else _BUNDLE_SECONDS)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        _LOG.warning("kafka %s/%s: %s", element.topic, element.partition, error)
                    continue
                offset = message.offset()
                if offset >= next_offset:  # else already claimed (the consumer was reset behind)
                    claimed.add(offset, message.value())
            del messages  # message objects are tracked by the garbage collector: none outlives its poll
            # one claim for the batch: claiming an offset claims every offset before it
            if claimed and not tracker.try_claim(claimed.offsets[-1]):
                # the restriction ends inside the batch (its stop, or the runner split off the rest);
                # the offsets before its end are still this call's
                claimed = claimed.before(tracker.current_restriction().stop)
                ended = True
                self._consumers[key] = (consumer, -1)  # it read past that end: the next call seeks
            if claimed:
                next_offset = claimed.offsets[-1] + 1
                if not ended:
                    self._consumers[key] = (consumer, next_offset)
                pending.extend(claimed)
                if len(pending) >= _DECODE_MESSAGES:
                    yield from self._flush(element, pending, watermark, consumer)
                    pending = _Claimed()
            if next_offset >= restriction.stop:
                yield from self._flush(element, pending, watermark, consumer)
                _WATERMARKS.done(self._step, key)
                return
            if ended:  # the runner split off the rest: it is read on, in another call
                yield from self._flush(element, pending, watermark, consumer)
                return
            if not read:
                yield from self._flush(element, pending, watermark, consumer)
                pending = _Claimed()
                idle = self._quiet.seconds(key, next_offset, time.monotonic())
                if idle >= self._kafka.idle_timeout and _caught_up(consumer, element, next_offset):
                    self._advance(watermark, key, int(time.time() * 1000) - self._skew_ms)
                    if self._stop_when_idle is not None and idle >= self._stop_when_idle:
                        tracker.try_claim(restriction.stop)  # nothing more to read: this partition is done
                        _WATERMARKS.done(self._step, key)
                        return
                break
        yield from self._flush(element, pending, watermark, consumer)
        tracker.defer_remainder(Duration(seconds=0 if next_offset > restriction.start else _POLL_SECONDS))

    def _flush(self, element: KafkaPartition, claimed: _Claimed, watermark: _PartitionWatermark,
               consumer: Consumer) -> Iterator[Any]:
        """Emits the claimed messages' batches and dead letters, then moves the watermark on
        and commits their offsets to the group."""
        if not claimed:
            return
        # what the partition has reported so far: the runner's watermark downstream is not ahead of it
        reported = watermark.current_watermark().micros // 1000
        newest = yield from self._emit(element, claimed, reported)
        if newest is not None:
            self._advance(watermark, (element.topic, element.partition), newest - self._skew_ms)
        consumer.commit(offsets=[TopicPartition(element.topic, element.partition, claimed.offsets[-1] + 1)],
                        asynchronous=True)

    def _resume(self, watermark: _PartitionWatermark, partition: tuple[str, int],
                siblings: tuple[tuple[str, int], ...]) -> None:
        """Puts the partition's own estimate among its step's as a call starts, from its
        estimator's state (after a restore from a checkpoint, that is where it is)."""
        _WATERMARKS.report(self._step, partition, watermark.own(), siblings)

    def _advance(self, watermark: _PartitionWatermark, partition: tuple[str, int], epoch_ms: int) -> None:
        """Moves the partition's own estimate on to ``epoch_ms``; its watermark to the step's slowest."""
        own = max(watermark.own(), epoch_ms)
        watermark.hold(own, _WATERMARKS.report(self._step, partition, own))

    def _emit(self, element: KafkaPartition, messages: _Claimed, watermark_ms: int) -> Iterator[Any]:
        """Decodes messages into batches and dead letters, batches too late at ``watermark_ms``
        into dead letters (``gate``); returns the newest event time (ms)."""
        wire = self._wire[element.kind]
        values = messages.values
        prefix = f"{element.topic}/{element.partition}@"

        def source(i: int) -> str:  # formatted only for a message that needs it
            return f"{prefix}{messages.offsets[i]}"

        if element.kind == "predictions":
            batches, dead = decode_predictions(wire, self._decoder, values, source)
        elif element.kind == "labels":
            offsets = np.array(messages.offsets, dtype=np.int64)
            batches, dead = decode_label_messages(wire, self._schemas, values, Offsets(prefix, offsets))
        else:
            records = (wire.record(source(i), v) for i, v in enumerate(values))
            batches, dead = decode_resources(records, tuple(self._schemas), self._slide_ms)
        newest = None
        for batch in batches:
            if element.kind == "predictions":
                count_events(batch.model, len(batch))
                last, start = int(batch.timestamps.max()), batch.slice_start_ms
            elif element.kind == "labels":
                last = start = int(batch.timestamps.max())
            else:
                last = start = batch.slice_start_ms
            newest = last if newest is None else max(newest, last)
            if element.kind != "labels":
                late = gate(batch, watermark_ms, self._slide_ms, self._lateness_ms)
                if late:
                    dead = [*dead, *late]
                    continue
            value = TimestampedValue((batch.model, batch), start / 1000)
            yield pvalue.TaggedOutput(LABELS, value) if element.kind == "labels" else value
        for letter in dead:
            count_dead_letter(letter.reason)
            yield pvalue.TaggedOutput(DEAD, letter.to_dict())
        return newest


def gate(batch: Batch, watermark_ms: int, slide_ms: int, lateness_ms: int) -> list[DeadLetter]:
    """The ``too_late`` dead letters of a batch (one a record) whose slice's allowed
    lateness is over at ``watermark_ms``; none if it is not, and a batch of predictions
    whose slice the watermark has passed is counted late (``ampel_late_events_total``).
    """
    end = batch.slice_start_ms + slide_ms
    if end + lateness_ms <= watermark_ms:
        detail = f"event time before {end}, past the allowed lateness at watermark {watermark_ms} (epoch ms)"
        where = f"model {batch.model}"
        return [DeadLetter("too_late", detail, where, json.dumps(record, default=str)) for record in batch.records()]
    if end <= watermark_ms and isinstance(batch, EventBatch):
        count_late(batch.model, len(batch))
    return []


def _caught_up(consumer: Consumer, element: KafkaPartition, next_offset: int) -> bool:
    """Whether the broker confirms there is nothing after ``next_offset`` in the partition.

    A partition is only idle when it is read to its end: while the broker is
    unreachable, its messages are merely delayed, and the watermark must wait for them.
    """
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(element.topic, element.partition), timeout=1.0)
    except KafkaException:
        return False
    return next_offset >= high


class ReadFromKafka(beam.PTransform):
    """Reads prediction events, resource samples or labels from Kafka as keyed, timestamped batches.

    Args:
        kafka: the cluster, topics, format and start position.
        schemas: per model id, the features its events carry.
        slide_ms: the slice length, milliseconds.
        lateness_ms: the allowed lateness, milliseconds: batches of slices later than that
            at the watermark are dead letters (``gate``).
        kinds: the input topics read: "predictions", "resources", "labels" (labels come
            on their own output, ``labels``, as ``(model, LabelBatch)``). Read labels in
            the same step as the predictions: the step's watermark is then held to its
            slowest partition (see ``_StepWatermarks``), and labels, which run ahead of
            their predictions in event time, never move the join's watermark past
            predictions not read yet.
        stop_at_end: read only up to the end offsets found at start (a bounded replay).
        stop_when_idle: finish a partition after this many seconds without messages.

    Returns (on application):
        A ``DoOutputsTuple`` with ``batches`` of ``(model, batch)`` (prediction events and
        resource samples), ``labels`` and ``dead`` letters.
    """

    def __init__(self, kafka: KafkaConfig, schemas: Mapping[str, ModelSchema], slide_ms: int, lateness_ms: int,
                 kinds: Sequence[str] = ("predictions", "resources"), stop_at_end: bool = False,
                 stop_when_idle: float | None = None) -> None:
        super().__init__()
        unknown = set(kinds) - set(TOPIC_SCHEMAS)
        if unknown:
            raise ValueError(f"unknown topic kinds {sorted(unknown)}; known: {sorted(TOPIC_SCHEMAS)}")
        self._kafka, self._schemas, self._slide_ms, self._lateness_ms = kafka, dict(schemas), slide_ms, lateness_ms
        self._kinds = tuple(kinds)
        self._step = uuid.uuid4().hex  # names this read step in every worker
        self._stop_at_end, self._stop_when_idle = stop_at_end, stop_when_idle

    def expand(self, pbegin: beam.pvalue.PBegin) -> pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "Partitions" >> beam.ParDo(_PartitionsDoFn(self._kafka, self._kinds, self._stop_at_end))
            | "Distribute" >> beam.Reshuffle()
            | "ReadPartition" >> beam.ParDo(
                _ReadPartitionDoFn(self._kafka, self._schemas, self._slide_ms, self._lateness_ms, self._stop_when_idle,
                                   self._step)
            )
            # dead letters untyped, as every other step's that meets them in a flatten
            .with_output_types(tuple[str, Batch], **{LABELS: tuple[str, LabelBatch]})
            .with_outputs(DEAD, LABELS, main="batches")
        )


class _ProduceDoFn(beam.DoFn):
    def __init__(self, kafka: KafkaConfig, topic: str, key_field: str | None) -> None:
        self._kafka, self._topic, self._key_field = kafka, topic, key_field

    def setup(self) -> None:
        self._producer = Producer({"enable.idempotence": True, "linger.ms": 20, **self._kafka.client_config()})
        self._failed: list[str] = []

    def _delivered(self, error: KafkaError | None, _: Any) -> None:
        if error is not None:
            self._failed.append(str(error))

    def process(self, element: Mapping[str, Any]) -> None:
        import orjson

        key = str(element.get(self._key_field, "")) if self._key_field else None
        while True:
            try:
                self._producer.produce(self._topic, orjson.dumps(element), key, on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def finish_bundle(self) -> None:
        # the bundle commits only once every message is acknowledged: a failure retries it
        remaining = self._producer.flush(120)
        if remaining or self._failed:
            failed, self._failed = self._failed, []
            raise RuntimeError(f"kafka topic {self._topic!r}: {remaining} undelivered, failures: {failed[:3]}")

    def teardown(self) -> None:
        self._producer.flush(30)


class WriteToKafka(beam.PTransform):
    """Writes dicts as JSON messages to a Kafka topic, keyed by one of their fields.

    Delivery is at least once: a bundle finishes only when the broker acknowledged
    all of its messages (idempotent producer), and a failed bundle is retried.
    """

    def __init__(self, kafka: KafkaConfig, topic: str, key_field: str | None = "model") -> None:
        super().__init__()
        self._kafka, self._topic, self._key_field = kafka, topic, key_field

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "Produce" >> beam.ParDo(_ProduceDoFn(self._kafka, self._topic, self._key_field))
