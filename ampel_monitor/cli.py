"""The ``ampel-monitor`` command line.

Errors in the input or the options end the command with a one-line message naming
the file, column or option, and exit status 2; never a traceback. A Flink cluster that
fails a request (``submit``, ``jobs``, ``cancel``) ends it with the failed request and
Flink's answer, and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ampel_monitor import __version__
from ampel_monitor.io import read_columns, read_reference
from drift.base import STAT_TESTS
from drift.profile import ReferenceProfile
from drift.report import DriftPolicy, DriftReport, drift_report, sketch_columns

__all__ = ["main"]


def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def _threshold(text: str) -> tuple[str, float]:
    test, sep, value = text.partition("=")
    if not sep or test not in STAT_TESTS:
        raise argparse.ArgumentTypeError(f"expected TEST=VALUE with TEST one of {sorted(STAT_TESTS)}, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold of {test!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"threshold of {test!r} must be finite, got {value!r}")
    return test, number


def _feature_threshold(text: str) -> tuple[str, str, float]:
    feature, sep, rest = text.rpartition(":")
    if not sep or not feature:
        raise argparse.ArgumentTypeError(f"expected FEATURE:TEST=VALUE, got {text!r}")
    return (feature, *_threshold(rest))


def _add_column_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--numeric", metavar="A,B", help="numeric feature columns (default: inferred)")
    parser.add_argument("--categorical", metavar="C,D", help="categorical feature columns (default: inferred)")
    parser.add_argument("--prediction", metavar="COL", help="column of the model's predictions")
    parser.add_argument("--confidence", metavar="COL", help="column of the model's confidences")
    parser.add_argument("--label", metavar="COL", help="column of ground-truth labels")
    parser.add_argument("--resolution", type=int, default=1000, help="KS bins: reference quantile steps (1000)")
    parser.add_argument("--max-categories", type=int, default=50, help="categories kept per feature (50)")


def _build_profile(path: str, args: argparse.Namespace) -> ReferenceProfile:
    numeric, categorical = _names(args.numeric), _names(args.categorical)
    special = [c for c in (args.prediction, args.confidence, args.label) if c]
    wanted = None if numeric is None and categorical is None else [*(numeric or []), *(categorical or []), *special]
    columns, attributions = read_reference(path, wanted, categorical=categorical or ())
    try:
        return ReferenceProfile.build(
            columns,
            numeric=numeric,
            categorical=categorical,
            prediction=args.prediction,
            confidence=args.confidence,
            label=args.label,
            resolution=args.resolution,
            max_categories=args.max_categories,
            attributions=attributions,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _load_reference(path: str, args: argparse.Namespace) -> ReferenceProfile:
    """A saved profile when ``path`` is one, otherwise a profile of the data file."""
    if Path(path).suffix.lower() == ".json" and Path(path).is_file():
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            data = None  # not one JSON document: JSON lines of data
        if isinstance(data, dict) and "format" in data:
            try:
                return ReferenceProfile.from_dict(data)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: invalid reference profile: {exc}") from None
    return _build_profile(path, args)


def _cmd_profile(args: argparse.Namespace) -> int:
    profile = _build_profile(args.reference, args)
    profile.save(args.out)
    kinds = [f.kind for f in profile.features.values()]
    print(
        f"profiled {profile.rows} rows: {kinds.count('numeric')} numeric and "
        f"{kinds.count('categorical')} categorical features -> {args.out}"
    )
    return 0


def _format_table(report: DriftReport) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    header = ("feature", "kind", "psi", "js", "statistic", "p-value", "missing", "drifted")
    rows = [header]
    for name, entry in report.to_dict()["features"].items():
        stat = entry.get("ks_statistic", entry.get("chi2_statistic"))
        pvalue = entry.get("ks_pvalue", entry.get("chi2_pvalue"))
        rows.append(
            (name, entry["kind"], cell(entry["psi"]), cell(entry["js"]), cell(stat), cell(pvalue),
             cell(entry["missing_share"]), "DRIFT" if entry["drifted"] else "no")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(
        f"{len(report.drifted_features)} of {len(report.features)} features drifted "
        f"(share {report.share_drifted:.3f})"
    )
    return "\n".join(lines)


def _cmd_drift(args: argparse.Namespace) -> int:
    profile = _load_reference(args.reference, args)
    names = list(profile.features)
    categorical = [n for n, f in profile.features.items() if f.kind == "categorical"]
    columns = read_columns(args.current, names, categorical=categorical)
    try:
        states = sketch_columns(profile, columns)
    except ValueError as exc:
        raise ValueError(f"{args.current}: {exc}") from None
    for name, state in states.items():
        if state.count == 0:
            raise ValueError(f"{args.current}: feature {name!r} has no values")
    per_feature: dict[str, dict[str, float]] = {}
    for feature, test, value in args.feature_threshold:
        per_feature.setdefault(feature, {})[test] = value
    unknown = sorted(set(per_feature) - set(profile.features))
    if unknown:
        raise ValueError(f"--feature-threshold: unknown feature {unknown[0]!r}")
    thresholds = dict(args.threshold) if args.threshold else None
    policy = DriftPolicy(per_feature=per_feature) if thresholds is None else DriftPolicy(thresholds, per_feature)
    report = drift_report(profile, states, policy)
    document = json.dumps(report.to_dict(), indent=2)
    if args.out:
        Path(args.out).write_text(document + "\n", encoding="utf-8")
    print(_format_table(report) if args.format == "table" else document)
    return 1 if args.fail_on_drift and report.drifted_features else 0


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from apache_beam.options.pipeline_options import PipelineOptions

    from ampel_monitor.config import load_config
    from ampel_monitor.demo import summarize
    from pipelines import prism, worker_pool
    from pipelines.monitor import KafkaSource, run
    from transforms.counters import serve_metrics

    config = load_config(args.config)
    if not args.input and config.labels is not None and prism.splits_workers(PipelineOptions(beam_args)):
        worker_pool.start_forker()  # the label side's worker, forked before this process starts threads
    kafka = None
    if not args.input:
        if config.kafka is None:
            raise ValueError("run: give --input files, or a kafka section in the config")
        kafka = KafkaSource(args.stop_at_end, args.stop_when_idle, resources=True, labels=config.labels is not None)
    elif args.stop_at_end or args.stop_when_idle is not None:
        raise ValueError("--stop-at-end and --stop-when-idle apply to the Kafka source, not to --input files")
    port = args.metrics_port if args.metrics_port is not None else config.sinks.metrics_port
    if port is not None:
        print(f"pipeline metrics on http://127.0.0.1:{serve_metrics(port)}/metrics", file=sys.stderr)
    summary = run(config, args.input, args.resources, args.out, beam_args, kafka, args.labels)
    print(summarize(summary))
    return 0


def _cmd_loadgen(args: argparse.Namespace) -> int:
    from ampel_monitor.config import KafkaConfig, KafkaTopics, load_config
    from ampel_monitor.loadgen import run_loadgen

    kafka = KafkaConfig(args.bootstrap)
    if args.config:
        configured = load_config(args.config).kafka
        if configured is not None:
            kafka = replace(configured, bootstrap=args.bootstrap)
    topics = kafka.topics if args.config else KafkaTopics()
    stats = run_loadgen(kafka.client_config(), args.rate, args.duration, args.scenario, args.format,
                        args.confluent_framing, topics, args.label_delay, args.labelled_fraction,
                        args.label_delay_min, args.seed, pace=not args.no_pace, key=args.key)
    print(f"produced {stats.predictions:,} predictions, {stats.labels:,} labels and {stats.resources:,} resource "
          f"samples in {stats.seconds:.1f} s: {stats.rate:,.0f} predictions/s")
    return 0


def _flink_master(args: argparse.Namespace) -> str:
    master = args.flink_master or os.environ.get("AMPEL_FLINK_MASTER")
    if not master:
        raise ValueError("--flink-master: give the Flink REST address HOST:PORT (or set AMPEL_FLINK_MASTER)")
    return master


def _flink_errors(command):
    """Flink and REST failures end the command with their message and exit status 1."""
    def run(*args: object) -> int:
        try:
            return command(*args)
        except RuntimeError as exc:
            print(f"ampel-monitor: error: {exc}", file=sys.stderr)
            return 1
    return run


@_flink_errors
def _cmd_submit(args: argparse.Namespace, beam_args: list[str]) -> int:
    from ampel_monitor.config import load_config, parse_duration
    from pipelines.submit import Submission, export_jar, submit

    config = load_config(args.config)
    jar = args.job_server_jar or os.environ.get("AMPEL_FLINK_JOB_SERVER_JAR")
    if not jar:
        raise ValueError("--job-server-jar: give the Beam Flink job-server jar (scripts/flink-job-server.sh fetch), "
                         "or set AMPEL_FLINK_JOB_SERVER_JAR")
    submission = Submission(
        flink_master=None if args.output_jar else _flink_master(args), job_server_jar=jar, flink_version=args.flink_version,
        worker_pool=args.worker_pool, parallelism=args.parallelism, savepoint=args.savepoint,
        checkpoint_interval=parse_duration(args.checkpoint_interval, "--checkpoint-interval"),
        job_name=args.job_name, out_dir=args.out or config.sinks.out_dir, sdk_workers=args.sdk_workers,
        timeout=args.timeout)
    if args.output_jar:
        print(export_jar(config, submission, args.output_jar, beam_args))
        return 0
    job = submit(config, submission, beam_args)
    print(job.id)
    return 0


@_flink_errors
def _cmd_jobs(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from ampel_monitor.flink import FlinkRest

    jobs = FlinkRest(_flink_master(args)).jobs()
    if args.state:
        jobs = [j for j in jobs if j.state == args.state.upper()]
    for job in jobs:
        started = datetime.fromtimestamp(job.start_time_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{job.id}  {job.state:<11} {started}  {job.name}")
    return 0


@_flink_errors
def _cmd_cancel(args: argparse.Namespace) -> int:
    from ampel_monitor.flink import FlinkRest, check_job_id

    check_job_id(args.job)
    rest = FlinkRest(_flink_master(args))
    if args.savepoint is None:
        if args.drain:
            raise ValueError("--drain applies with --savepoint")
        rest.cancel(args.job)
        rest.wait_for_state(args.job, {"CANCELED"}, args.timeout)
        print(f"cancelled {args.job}", file=sys.stderr)
        return 0
    path = rest.stop_with_savepoint(args.job, args.savepoint or None, args.drain, args.timeout)
    rest.wait_for_state(args.job, {"FINISHED", "CANCELED"}, args.timeout)
    print(path)
    return 0


def _cmd_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from ampel_monitor.demo import REPORT_FILE, run_demo, summarize

    scenario, summary = run_demo(args.out, args.seed, args.hours, args.rate, beam_args)
    print(summarize(summary, scenario))
    print(f"report: {summary.out_dir / REPORT_FILE}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ampel_monitor.report import write_report

    written = write_report(args.metrics, args.out or Path(args.metrics) / "report.html")
    print(f"report: {written.charts} charts ({written.notes} without data), {written.bytes / 1e6:.1f} MB -> {written.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ampel-monitor", description="Streaming performance and drift monitoring of ML models."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    profile = commands.add_parser("profile", help="build a reference profile from a data file")
    profile.add_argument("--reference", required=True, metavar="FILE", help="reference data (csv, parquet, jsonl, avro)")
    profile.add_argument("--out", required=True, metavar="PROFILE.json", help="where to write the profile")
    _add_column_options(profile)
    profile.set_defaults(run=_cmd_profile)

    drift = commands.add_parser("drift", help="compare current data with a reference")
    drift.add_argument("--reference", required=True, metavar="FILE_OR_PROFILE", help="reference data or profile")
    drift.add_argument("--current", required=True, metavar="FILE", help="current data (csv, parquet, jsonl, avro)")
    drift.add_argument("--out", metavar="REPORT.json", help="also write the JSON report here")
    drift.add_argument("--format", choices=("json", "table"), default="json", help="what to print (json)")
    drift.add_argument("--threshold", type=_threshold, action="append", default=[], metavar="TEST=VALUE",
                       help="a deciding test and its threshold, repeatable (default: psi=0.2 js=0.1)")
    drift.add_argument("--feature-threshold", type=_feature_threshold, action="append", default=[],
                       metavar="FEATURE:TEST=VALUE", help="a per-feature threshold, repeatable")
    drift.add_argument("--fail-on-drift", action="store_true", help="exit with status 1 when a feature drifted")
    _add_column_options(drift)
    drift.set_defaults(run=_cmd_drift)

    run = commands.add_parser(
        "run", help="run the monitoring pipeline (other options go to Beam, e.g. --runner)",
        description="Runs the monitoring pipeline. Options not listed here are Beam pipeline options.",
    )
    run.add_argument("--config", required=True, metavar="CFG", help="the YAML config")
    run.add_argument("--input", action="append", default=[], metavar="FILE",
                     help="prediction events (JSON lines or Avro container file), repeatable; "
                          "without it, the config's Kafka topics are read (streaming)")
    run.add_argument("--resources", action="append", default=[], metavar="FILE",
                     help="resource samples (JSON lines or Avro), repeatable")
    run.add_argument("--labels", action="append", default=[], metavar="FILE",
                     help="label events (JSON lines or Avro), repeatable: quality per window")
    run.add_argument("--out", metavar="DIR", help="output directory (default: the config's sinks.out_dir)")
    run.add_argument("--metrics-port", type=int, metavar="PORT", help="serve the pipeline's counters on /metrics")
    run.add_argument("--stop-at-end", action="store_true", help="Kafka: read up to the end offsets found at start")
    run.add_argument("--stop-when-idle", type=float, metavar="SECONDS",
                     help="Kafka: finish a partition after this long without messages")
    run.set_defaults(run=_cmd_run, beam=True)

    loadgen = commands.add_parser("loadgen", help="produce predictions, labels and resource samples to Kafka")
    loadgen.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    loadgen.add_argument("--rate", type=float, default=1000.0, help="prediction events per second (1000)")
    loadgen.add_argument("--duration", type=float, default=60.0, help="seconds (60)")
    loadgen.add_argument("--scenario", default="steady", choices=("steady", "drift", "latency-spike", "errors", "mixed"))
    loadgen.add_argument("--format", default="avro", choices=("avro", "json"))
    loadgen.add_argument("--confluent-framing", action="store_true", help="Avro with the Confluent framing")
    loadgen.add_argument("--label-delay", type=float, default=60.0, help="seconds until a label arrives (60)")
    loadgen.add_argument("--label-delay-min", type=float, default=None,
                         help="draw each label's delay uniformly from this many seconds to --label-delay")
    loadgen.add_argument("--labelled-fraction", type=float, default=0.5, help="share of predictions labelled (0.5)")
    loadgen.add_argument("--seed", type=int, default=7)
    loadgen.add_argument("--no-pace", action="store_true", help="produce as fast as possible (benchmarks)")
    loadgen.add_argument("--key", default="model", choices=("model", "event"),
                         help="key predictions and labels by model id (each model in one partition) or by event id "
                              "(spread over every partition) (model)")
    loadgen.add_argument("--config", metavar="CFG", help="take topic names and client security settings from a config")
    loadgen.set_defaults(run=_cmd_loadgen)

    report = commands.add_parser("report", help="write a self-contained HTML report of a run's outputs")
    report.add_argument("--metrics", required=True, metavar="DIR",
                        help="the run's output directory (metrics.jsonl, alerts.jsonl, ...)")
    report.add_argument("--out", metavar="REPORT.html", help="where to write the page (default: DIR/report.html)")
    report.set_defaults(run=_cmd_report)

    submit = commands.add_parser(
        "submit", help="submit the streaming Kafka job to a Flink cluster, detached; prints the job id",
        description="Submits the job reading the config's Kafka topics to a Flink cluster and prints its job id "
                    "once it runs. Options not listed here are Beam pipeline options.")
    submit.add_argument("--flink-master", metavar="HOST:PORT", help="Flink REST address (or AMPEL_FLINK_MASTER)")
    submit.add_argument("--config", required=True, metavar="CFG", help="the YAML config (with a kafka section)")
    submit.add_argument("--parallelism", type=int, metavar="N", help="parallelism (default: the cluster's)")
    submit.add_argument("--savepoint", metavar="PATH", help="restore the state of this savepoint")
    submit.add_argument("--job-server-jar", metavar="JAR",
                        help="Beam Flink job-server jar (or AMPEL_FLINK_JOB_SERVER_JAR; scripts/flink-job-server.sh fetch)")
    submit.add_argument("--flink-version", default="1.19", help="Flink version of the job server (1.19)")
    submit.add_argument("--worker-pool", default="127.0.0.1:15100", metavar="HOST:PORT",
                        help="Python worker pool as the TaskManagers reach it (127.0.0.1:15100)")
    submit.add_argument("--checkpoint-interval", default="10s", metavar="DURATION", help="between checkpoints (10s)")
    submit.add_argument("--job-name", help="Flink job name (default: ampel-monitor-<random>)")
    submit.add_argument("--out", metavar="DIR", help="JSON-lines output directory on the workers "
                                                     "(default: the config's sinks.out_dir)")
    submit.add_argument("--sdk-workers", type=int, metavar="N",
                        help="Python worker processes per TaskManager (default: the parallelism)")
    submit.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the job to run (300)")
    submit.add_argument("--output-jar", metavar="JAR",
                        help="write the job as a self-contained jar for `flink run` or a FlinkDeployment instead "
                             "of submitting it (needs scripts/flink-job-server.sh shaded)")
    submit.set_defaults(run=_cmd_submit, beam=True)

    jobs = commands.add_parser("jobs", help="list the jobs of a Flink cluster")
    jobs.add_argument("--flink-master", metavar="HOST:PORT", help="Flink REST address (or AMPEL_FLINK_MASTER)")
    jobs.add_argument("--state", help="only jobs in this state (e.g. RUNNING)")
    jobs.set_defaults(run=_cmd_jobs)

    cancel = commands.add_parser("cancel", help="stop a Flink job, with a savepoint to restart it from")
    cancel.add_argument("job", metavar="JOB", help="the Flink job id")
    cancel.add_argument("--flink-master", metavar="HOST:PORT", help="Flink REST address (or AMPEL_FLINK_MASTER)")
    cancel.add_argument("--savepoint", nargs="?", const="", metavar="DIR",
                        help="stop with a savepoint (into DIR, default the cluster's state.savepoints.dir) "
                             "and print its path")
    cancel.add_argument("--drain", action="store_true",
                        help="with --savepoint: fire every window first (for a job not to be resumed)")
    cancel.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the savepoint (600)")
    cancel.set_defaults(run=_cmd_cancel)

    demo = commands.add_parser("demo", help="run the monitor on a generated, seeded scenario")
    demo.add_argument("--out", default="out/demo", metavar="DIR", help="output directory (out/demo)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--hours", type=float, default=3.0, help="hours of event time (3)")
    demo.add_argument("--rate", type=float, default=30.0, help="events per second of event time (30)")
    demo.set_defaults(run=_cmd_demo, beam=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "beam", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.run(args, rest) if getattr(args, "beam", False) else args.run(args))
    except ValueError as exc:
        print(f"ampel-monitor: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ampel-monitor: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
