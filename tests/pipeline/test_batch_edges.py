"""How batches travel in the streaming pipeline read from Kafka (the graph only: no broker).

Beam encodes sampled elements on every edge to measure their size, and a runner moves an
element between stages with its edge's coder: an edge typed ``Any`` pickles a batch of
thousands of events for both. Prism also runs each consumer of a flatten as a stage of its
own, decoding every batch once more: what a step needs from every input runs before the
flatten.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.portability import common_urns
from apache_beam.runners.pipeline_context import PipelineContext

from ampel_monitor.config import load_config
from pipelines.monitor import KafkaSource, build, load_specs
from tests.kafka.conftest import kafka_config
from tests.pipeline.streams import write_setup
from transforms.coders import BatchCoder


def _pipeline(tmp_path, label_hints: dict[str, str] | None = None) -> beam.Pipeline:
    write_setup(tmp_path, [], {}, extra={"labels": {"max_delay": "1h"}})
    topics = {kind: f"t-{kind}" for kind in ("predictions", "labels", "resources", "alerts", "dead_letters")}
    config = load_config(kafka_config(tmp_path, topics, {"size": "2m", "slide": "1m", "allowed_lateness": "1m"}))
    pipeline = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build(pipeline, config, load_specs(config), (), (), str(tmp_path / "out"), KafkaSource(labels=True),
          label_hints=label_hints)
    return pipeline


def _graph(tmp_path) -> tuple[dict[str, tuple[str, beam.coders.Coder]], dict[str, list[str]]]:
    """Each transform's outputs, full label[tag] -> (transform type, the output's coder), and
    each transform's inputs, full label -> the full labels of their producers."""
    pipeline = _pipeline(tmp_path)
    edges, inputs = {}, {}

    class Edges(PipelineVisitor):
        def visit_transform(self, node) -> None:
            inputs[node.full_label] = [pcoll.producer.full_label for pcoll in node.inputs if pcoll.producer]
            for tag, pcoll in node.outputs.items():
                edges[f"{node.full_label}[{tag}]"] = (type(node.transform).__name__,
                                                      beam.coders.registry.get_coder(pcoll.element_type))

    pipeline.visit(Edges())
    return edges, inputs


def test_batches_leave_the_kafka_reader_with_the_batch_coder(tmp_path):
    edges, _ = _graph(tmp_path)

    def coder(suffix: str) -> beam.coders.Coder:
        (found,) = [c for label, (_, c) in edges.items() if label.endswith(suffix)]
        return found

    for suffix in ("ReadKafka/ReadPartition/ParDo(_ReadPartitionDoFn)[None]",
                   "ReadKafkaLabels/ReadPartition/ParDo(_ReadPartitionDoFn)[labels]"):
        value = coder(suffix)
        assert isinstance(value, beam.coders.TupleCoder), (suffix, value)
        assert isinstance(value.coders()[1], BatchCoder), (suffix, value)


def test_the_metrics_and_the_join_take_the_batches_as_read(tmp_path):
    edges, inputs = _graph(tmp_path)
    flattens = sorted(label for label, (kind, _) in edges.items() if kind == "Flatten")
    # whole batches of predictions and labels reach the window and quality steps from the
    # read step itself, not through a flatten whose consumers' stage would decode them once more
    read = "ReadKafka/ReadPartition/ParDo(_ReadPartitionDoFn)"
    assert not [label for label in flattens if "Batches" in label], flattens
    # no keyed step between: the slices' combine starts in the read's stage (lateness is
    # judged in the read step), so whole batches never cross to another stage for the metrics
    assert inputs["WindowMetrics/FoldLargeBatches"] == [read]
    assert [label for label, producers in inputs.items() if label.startswith("Quality/") and read in producers] == [
        "Quality/ShardPredictions"]
    assert [label for label, producers in inputs.items() if label.startswith("Quality/") and read.replace(
        "ReadKafka/", "ReadKafkaLabels/") in producers] == ["Quality/ShardLabels"]
    # the join counts the predictions it is sent: its output alone goes to the quality slices'
    # combine, which Prism can then start in the join's stage (flattened with counts from the
    # read's stage, the combine ran in a stage of its own, every labelled pair crossing to it)
    assert inputs["Quality/PairsWithModel"] == ["Quality/Join/ParDo(_JoinDoFn)"]
    assert not [label for label in flattens if "Labels" in label]
    # the join's two sides are windowed before they meet, not after; no other flatten
    assert [label for label in flattens if label.startswith("Quality/")] == ["Quality/BothSides[None]"]
    assert inputs["Quality/BothSides"] == ["Quality/PredictionsUnwindowed", "Quality/LabelsUnwindowed"]


def _flatten_inputs_of_another_coder(pipeline: beam.Pipeline) -> list[tuple[str, str, str]]:
    """(flatten, input, the input's coder) for each input of a flatten whose coder is not
    the flatten's, in the pipeline as a runner receives it."""
    components = pipeline.to_runner_api().components
    coder = PipelineContext(components).coders.get_by_id
    producers = {pcoll: t.unique_name for t in components.transforms.values() for pcoll in t.outputs.values()}
    found = []
    for flatten in components.transforms.values():
        if flatten.spec.urn != common_urns.primitives.FLATTEN.urn:
            continue
        (output,) = flatten.outputs.values()
        for pcoll in flatten.inputs.values():
            if components.pcollections[pcoll].coder_id != components.pcollections[output].coder_id:
                found.append((flatten.unique_name, producers[pcoll], str(coder(components.pcollections[pcoll].coder_id))))
    return found


def test_every_flatten_takes_its_inputs_in_its_own_coder(tmp_path):
    """Prism moves each input of a flatten coded otherwise through an SDK stage of its own
    first (every sharded prediction and label once more, on their way to the join)."""
    write_setup(tmp_path, [], {}, extra={"labels": {"max_delay": "1h"}, "sinks": {
        "out_dir": str(tmp_path / "out"), "prometheus": {"url": "http://127.0.0.1:9/api/v1/write"},
        "alertmanager": {"url": "http://127.0.0.1:9"},
        "elasticsearch": {"hosts": ["http://127.0.0.1:9"], "decision_log": {"sample": 0.1}}}})
    topics = {kind: f"t-{kind}" for kind in ("predictions", "labels", "resources", "alerts", "dead_letters")}
    config = load_config(kafka_config(tmp_path, topics, {"size": "2m", "slide": "1m", "allowed_lateness": "1m"}))
    kafka = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build(kafka, config, load_specs(config), (), (), str(tmp_path / "out"), KafkaSource(labels=True))
    (tmp_path / "labels.jsonl").write_text("")
    files = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build(files, config, load_specs(config), [str(tmp_path / "events.jsonl")], [], str(tmp_path / "out"),
          labels=[str(tmp_path / "labels.jsonl")])
    assert _flatten_inputs_of_another_coder(kafka) == []
    assert _flatten_inputs_of_another_coder(files) == []


def test_several_streams_are_flattened_with_the_batch_coder(tmp_path):
    """Events and resource samples from files: two streams, one typed flatten."""
    config = load_config(write_setup(tmp_path, [], {"size": "2m", "slide": "1m", "allowed_lateness": "1m"}))
    for name in ("events.jsonl", "resources.jsonl"):
        (tmp_path / name).write_text("")
    pipeline = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build(pipeline, config, load_specs(config), [str(tmp_path / "events.jsonl")], [str(tmp_path / "resources.jsonl")],
          str(tmp_path / "out"))
    coders = {}

    class Edges(PipelineVisitor):
        def visit_transform(self, node) -> None:
            for tag, pcoll in node.outputs.items():
                coders[f"{node.full_label}[{tag}]"] = beam.coders.registry.get_coder(pcoll.element_type)

    pipeline.visit(Edges())
    value = coders["AllBatches[None]"]
    assert isinstance(value, beam.coders.TupleCoder) and isinstance(value.coders()[1], BatchCoder), value


def test_the_label_side_alone_runs_in_the_environment_of_its_hints(tmp_path):
    """With ``pipelines.prism.QUALITY_WORKER`` the labels' read, their shard step, the join and
    the quality slices' partial combine get an environment of their own (Prism runs it in a
    worker process); the predictions' read, their shard step and the windows keep the default
    one, so no batch of predictions crosses to the label side whole."""
    from pipelines.prism import QUALITY_WORKER

    components = _pipeline(tmp_path, QUALITY_WORKER).to_runner_api().components
    hinted = {env for env, proto in components.environments.items() if proto.resource_hints}
    assert len(hinted) == 1
    leaves = {t.unique_name: t.environment_id for t in components.transforms.values()
              if not t.subtransforms and t.environment_id}
    apart = sorted(name for name, env in leaves.items() if env in hinted)
    assert {"ReadKafkaLabels/ReadPartition/ParDo(_ReadPartitionDoFn)",
            "Quality/ShardLabels", "Quality/Join/ParDo(_JoinDoFn)", "Quality/PairsWithModel",
            "Quality/FoldLargePairs"} <= set(apart), apart
    assert any(name.startswith("Quality/CombineQualitySlices/") for name in apart), apart
    assert not [name for name in apart if not name.startswith(("ReadKafkaLabels/", "Quality/"))], apart
    for name in ("ReadKafka/ReadPartition", "Quality/ShardPredictions", "WindowMetrics/", "Quality/MergeQualitySlices",
                 "Quality/ExtractQuality"):
        assert not [a for a in apart if a.startswith(name)], (name, apart)
