"""The monitoring job: prediction events in, window metrics, alerts and dead letters out.

::

    ReadEvents ─┐
    ReadResources ┴─ Flatten ─┬─ WindowMetrics ─┬─ metrics ─┬─ WriteMetrics, ToPrometheus, ToElasticsearch
                              │                 │           └ EvaluateAlerts ─ WriteAlerts, ToAlertmanager,
                              │                 │                              ToElasticsearch, Kafka
                              └─ DecisionLog ───┼──────────── ToElasticsearch (sampled, when on)
                  dead letters (all steps) ─────┴─ WriteDeadLetters, ToElasticsearch, Kafka

With files as input it is a bounded replay, run on the embedded local runner. Every
sink's undeliverable records join the dead letters (the Elasticsearch sink's own
go to the file and Kafka only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, StandardOptions

from ampel_monitor.alerts import QUALITY_RULES
from ampel_monitor.config import Config, LabelsConfig
from ampel_monitor.events import Batch, ModelSchema
from ampel_monitor.io import read_reference
from ampel_monitor.series import window_label
from ampel_monitor.window import ModelSpec
from drift.profile import ReferenceProfile
from pipelines import prism, worker_pool
from transforms.alerts import EvaluateAlerts, EvaluateConceptDrift
from transforms.kafka import LABELS, ReadFromKafka, WriteToKafka
from transforms.labels import CompareVersions, QualityWindows
from transforms.read import DEAD, ReadEventFiles, ReadLabelFiles, ReadResourceFiles
from transforms.sinks import (
    PostToAlertmanager,
    WriteJsonLines,
    WriteToElasticsearch,
    WriteToPrometheus,
    decision_records,
)
from transforms.windows import WindowMetrics

__all__ = ["OUTPUT_FILES", "KafkaSource", "RunSummary", "build", "load_specs", "run"]

#: Output kind to file name in the output directory.
OUTPUT_FILES = {"metrics": "metrics.jsonl", "alerts": "alerts.jsonl", "dead_letters": "dead_letters.jsonl",
                "quality": "quality.jsonl", "ab": "ab.jsonl"}


def load_profile(path: str, prediction: str | None, confidence: str | None, label: str | None) -> ReferenceProfile:
    """A saved profile, or a profile built from a reference data file.

    Raises:
        ValueError: naming the file, if it cannot be read or profiled.
    """
    if path.endswith(".json"):
        text = Path(path).read_text(encoding="utf-8")
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and "format" in document:
            try:
                return ReferenceProfile.from_dict(document)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: invalid reference profile: {exc}") from None
    columns, attributions = read_reference(path)
    present = set(columns)
    try:
        return ReferenceProfile.build(
            columns,
            prediction=prediction if prediction in present else None,
            confidence=confidence if confidence in present else None,
            label=label if label in present else None,
            attributions=attributions,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_specs(config: Config) -> dict[str, ModelSpec]:
    """Loads every model's reference profile; fails at start-up naming the model."""
    specs = {}
    for i, model in enumerate(config.models):
        try:
            profile = load_profile(model.reference, model.prediction, model.confidence, model.label)
        except ValueError as exc:
            raise ValueError(f"models[{i}].reference: {exc}") from None
        specs[model.id] = ModelSpec(model.id, profile, config.drift, config.confidence_threshold)
    return specs


def _quality_counts(element: tuple[Any, dict[str, Any]], min_fraction: float) -> bool:
    """Quality alerts only once enough of the window's predictions are labelled."""
    quality = element[1]["quality"]
    return (quality.get("labelled_fraction") or 0.0) >= min_fraction


@dataclass(frozen=True)
class KafkaSource:
    """Read from the config's Kafka topics instead of files."""

    #: Read only up to the end offsets found at start (a bounded replay of the topics).
    stop_at_end: bool = False
    #: Finish each partition after this many seconds without messages.
    stop_when_idle: float | None = None
    #: Also read the resource-samples topic.
    resources: bool = True
    #: Also read the labels topic (and compute quality).
    labels: bool = False


def _merged(streams: Sequence[beam.PCollection], name: str) -> beam.PCollection:
    """Keyed batches of several reads as one PCollection, typed so that they travel with
    the batch coder. A single one is passed on as it is: a runner may run each consumer
    of a flatten as a stage of its own (Prism does), decoding every batch again."""
    if len(streams) == 1:
        return streams[0]
    return streams | name >> beam.Flatten().with_output_types(tuple[str, Batch])


def build(
    pipeline: beam.Pipeline,
    config: Config,
    specs: Mapping[str, ModelSpec],
    inputs: Sequence[str] = (),
    resources: Sequence[str] = (),
    out_dir: str | None = None,
    kafka: KafkaSource | None = None,
    labels: Sequence[str] = (),
    label_hints: Mapping[str, str] | None = None,
) -> dict[str, beam.PCollection]:
    """Adds the monitoring job to ``pipeline``; returns its ``metrics``, ``alerts`` and ``dead_letters``.

    Events come from ``inputs`` (and ``resources``) files, or with ``kafka`` from the
    config's Kafka topics; then alerts and dead letters also go to their topics.
    ``label_hints``: resource hints of the label side (the labels' read, the join and
    the quality slices), for a runner to run them apart (``pipelines.prism``).
    """
    slide_ms = config.windows.slide_ms
    schemas = {m.id: ModelSchema.from_profile(specs[m.id].profile, m.task, m.sensitive) for m in config.models}
    label_streams = []
    if kafka is not None:
        if config.kafka is None:
            raise ValueError("kafka: the config has no kafka section")
        kinds = ("predictions", *(("resources",) if kafka.resources else ()))
        read = pipeline | "ReadKafka" >> ReadFromKafka(
            config.kafka, schemas, slide_ms, config.windows.lateness_ms, kinds, kafka.stop_at_end, kafka.stop_when_idle)
        streams, dead = [read.batches], [read[DEAD]]
        if kafka.labels:  # a step of its own, which may run in the label side's worker
            read_labels = pipeline | "ReadKafkaLabels" >> _with_hints(ReadFromKafka(
                config.kafka, schemas, slide_ms, config.windows.lateness_ms, ("labels",), kafka.stop_at_end,
                kafka.stop_when_idle), label_hints)
            label_streams.append(read_labels[LABELS])
            dead.append(read_labels[DEAD])
    else:
        events = pipeline | "ReadEvents" >> ReadEventFiles(list(inputs), schemas, slide_ms)
        streams, dead = [events.batches], [events[DEAD]]
    if resources and kafka is None:
        samples = pipeline | "ReadResources" >> ReadResourceFiles(list(resources), tuple(specs), slide_ms)
        streams.append(samples.batches)
        dead.append(samples[DEAD])
    if labels and kafka is None:
        read_labels = pipeline | "ReadLabels" >> ReadLabelFiles(list(labels), tuple(specs))
        label_streams.append(read_labels.batches)
        dead.append(read_labels[DEAD])
    streaming = pipeline.options.view_as(StandardOptions).streaming
    batches = _merged(streams, "AllBatches")
    windowed = batches | "WindowMetrics" >> WindowMetrics(specs, config.windows, streaming)
    metrics = windowed["metrics"] | "Unkey" >> beam.Values()
    alerts = windowed["metrics"] | "Alerts" >> EvaluateAlerts(
        config.rules, config.min_alert_events, config.drift.min_count, streaming
    )
    baselines = {m.id: m.baseline_version for m in config.models if m.baseline_version}
    ab = [windowed["metrics"] | "CompareVersions" >> CompareVersions(baselines, "metrics", slide_ms)] if baselines else []
    quality = None
    if label_streams:
        # the streams as read: the join shards them (and counts the predictions) where they
        # are read, so the predictions' features never cross to it
        joined = (
            (tuple(streams), tuple(label_streams))
            | "Quality" >> QualityWindows(config.models, {m: s.profile.quality for m, s in specs.items()},
                                          config.windows, config.labels or LabelsConfig(), streaming, label_hints)
        )
        dead.append(joined[DEAD])
        quality = joined["quality"]
        gates = config.labels or LabelsConfig()
        quality_rules = [r for r in config.rules if r.name in QUALITY_RULES]
        if quality_rules:
            alerts = (
                (alerts, quality
                 | "QualityGate" >> beam.Filter(_quality_counts, gates.min_fraction)
                 | "AsWindows" >> beam.MapTuple(lambda key, q: (key, {**q, "count": q["quality"]["labelled"], "late": False}))
                 | "QualityAlerts" >> EvaluateAlerts(quality_rules, gates.min_labelled, 0, streaming))
                | "AllAlerts" >> beam.Flatten()
            )
        drift = joined["quality"] | "ConceptDrift" >> EvaluateConceptDrift(config.windows.size_ms, streaming)
        alerts = (alerts, drift) | "WithConceptDrift" >> beam.Flatten()
        if baselines:
            ab.append(joined["quality"] | "CompareQuality" >> CompareVersions(baselines, "quality", slide_ms))
        quality = quality | "UnkeyQuality" >> beam.Values()
    comparisons = ab | "AllComparisons" >> beam.Flatten() if ab else None
    windows = {"metrics": metrics}
    if quality is not None:
        windows["quality"] = quality
    if comparisons is not None:
        windows["ab"] = comparisons
    sinks = config.sinks
    if sinks.prometheus is not None:
        dead.append(windows | "ToPrometheus" >> WriteToPrometheus(sinks.prometheus, window_label(config.windows.size)))
    if sinks.alertmanager is not None:
        dead.append(alerts | "ToAlertmanager" >> PostToAlertmanager(sinks.alertmanager))
    if sinks.elasticsearch is not None:
        documents = {**windows, "alerts": alerts, "dead_letters": dead | "DeadLettersToIndex" >> beam.Flatten()}
        if sinks.elasticsearch.decision_log.enabled:
            share = sinks.elasticsearch.decision_log.sample
            documents["decisions"] = batches | "DecisionLog" >> beam.FlatMap(decision_records, share)
        dead.append(documents | "ToElasticsearch" >> WriteToElasticsearch(sinks.elasticsearch))
    outputs = {**windows, "alerts": alerts, "dead_letters": dead | "AllDeadLetters" >> beam.Flatten()}
    if out_dir:
        for kind, pcoll in outputs.items():
            _ = pcoll | f"Write{kind.title().replace('_', '')}" >> WriteJsonLines(str(Path(out_dir) / OUTPUT_FILES[kind]))
    if kafka is not None and config.kafka is not None:
        topics = config.kafka.topics
        _ = outputs["alerts"] | "AlertsToKafka" >> WriteToKafka(config.kafka, topics.alerts, "model")
        _ = outputs["dead_letters"] | "DeadLettersToKafka" >> WriteToKafka(config.kafka, topics.dead_letters, "reason")
    return outputs


@dataclass(frozen=True)
class RunSummary:
    """What a finished run produced, read back from its output files."""

    out_dir: Path
    windows: int
    late_windows: int
    alerts: list[dict[str, Any]]
    dead_letters: dict[str, int]
    metrics: list[dict[str, Any]]
    #: Quality panes (when labels were given).
    quality: list[dict[str, Any]] = field(default_factory=list)
    #: A/B comparisons with the baseline versions (when configured).
    ab: list[dict[str, Any]] = field(default_factory=list)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _with_hints(transform: beam.PTransform, hints: Mapping[str, str] | None) -> beam.PTransform:
    return transform.with_resource_hints(**hints) if hints else transform


def _local_runner(options: PipelineOptions) -> Any:
    """Beam's in-process FnApiRunner for a bounded replay, unless a runner is chosen.

    Beam's default (DirectRunner) would first try Prism: fetch its binary, which needs
    the internet, and serialize the whole pipeline for it, before falling back to the
    same FnApiRunner.
    """
    if options.view_as(StandardOptions).runner is not None:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def run(
    config: Config,
    inputs: Sequence[str] = (),
    resources: Sequence[str] = (),
    out_dir: str | None = None,
    beam_args: Sequence[str] = (),
    kafka: KafkaSource | None = None,
    labels: Sequence[str] = (),
) -> RunSummary:
    """Runs the job to its end, over files on the local runner by default, or over Kafka.

    With ``kafka`` the pipeline runs in streaming mode; it ends when every partition
    is done (``stop_at_end``, ``stop_when_idle``), or never. Sets this process's garbage
    collector thresholds (``pipelines.worker_pool.tune_gc``): in-process runners run the
    pipeline's workers here.
    """
    specs = load_specs(config)
    out = Path(out_dir or config.sinks.out_dir or "out")
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES.values():
        (out / name).write_text("", encoding="utf-8")
    options = PipelineOptions(list(beam_args))
    worker_pool.tune_gc()  # this process runs the pipeline's workers (in-process runners, LOOPBACK)
    # Prism (Beam 2.77) splits a running bundle at an index that counts its data elements
    # only, but cuts its list of data and timers there: with timers in the bundle, the
    # last elements before the split went to both halves and the key left its in-progress
    # set, so a second bundle ran the same key at once (the join lost the state one of
    # them wrote). No dynamic splits on Prism: the Kafka source checkpoints itself.
    if "prism" in str(options.view_as(StandardOptions).runner).lower():
        options.view_as(DebugOptions).add_experiment("prism_disable_sdf_split")
    runner, label_hints = _local_runner(options), None
    if kafka is not None:
        options.view_as(StandardOptions).streaming = True
        runner = None
        if kafka.labels and prism.splits_workers(options):  # the label side in a worker process of its own
            runner, label_hints = prism.PrismRunner(), prism.QUALITY_WORKER
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        build(pipeline, config, specs, inputs, resources, str(out), kafka, labels, label_hints)
    metrics = read_jsonl(out / OUTPUT_FILES["metrics"])
    dead: dict[str, int] = {}
    for letter in read_jsonl(out / OUTPUT_FILES["dead_letters"]):
        dead[letter["reason"]] = dead.get(letter["reason"], 0) + 1
    return RunSummary(
        out_dir=out,
        windows=sum(not m["late"] for m in metrics),
        late_windows=sum(m["late"] for m in metrics),
        alerts=read_jsonl(out / OUTPUT_FILES["alerts"]),
        dead_letters=dead,
        metrics=metrics,
        quality=read_jsonl(out / OUTPUT_FILES["quality"]),
        ab=read_jsonl(out / OUTPUT_FILES["ab"]),
    )
