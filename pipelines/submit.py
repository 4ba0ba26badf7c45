"""Submit the streaming Kafka job to a Flink cluster, detached.

The job is the one ``ampel-monitor run`` runs on Kafka (``pipelines.monitor.build`` with
``KafkaSource``), translated by the Beam Flink job server (``--flink_job_server_jar``)
and sent to the cluster's REST endpoint; its Python code runs in the EXTERNAL worker
pool beside each TaskManager (``--environment_config``). Checkpoints are taken every
``checkpoint_interval`` seconds; ``savepoint`` restores the state a stopped job saved.

The Flink job id comes from the cluster's REST API (the Beam result does not carry
it): the job is the new one named ``job_name``. ``submit`` returns once it runs.

``export_jar`` writes the same job as a self-contained jar instead (the pipeline, its
options and Beam's Flink runner, main class ``FlinkPipelineRunner``), which Flink runs
alone: ``flink run -d job.jar``, or a FlinkDeployment in application mode
(``deploy/k8s``). It needs the shaded job server (``scripts/flink-job-server.sh shaded``).
"""

from __future__ import annotations

import logging
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from ampel_monitor.config import Config
from ampel_monitor.flink import TERMINAL_STATES, FlinkJob, FlinkRest, rest_url
from pipelines.monitor import OUTPUT_FILES, KafkaSource, build, load_specs

__all__ = ["Submission", "export_jar", "pipeline_args", "submit"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """Where and how to run the job."""

    #: The REST endpoint of the JobManager, ``HOST:PORT`` (None: the cluster that runs a job jar).
    flink_master: str | None
    #: The Beam Flink job-server jar (``scripts/flink-job-server.sh fetch``).
    job_server_jar: str
    #: The Flink version the job server is built for (``1.19``).
    flink_version: str
    #: The Python worker pool as the TaskManagers reach it, ``HOST:PORT``.
    worker_pool: str
    #: Parallelism of every step (None: the cluster's ``parallelism.default``).
    parallelism: int | None = None
    #: Restore the state of this savepoint (or retained checkpoint).
    savepoint: str | None = None
    #: Seconds between checkpoints.
    checkpoint_interval: float = 10.0
    #: The Flink job name (default: ampel-monitor-<random>).
    job_name: str | None = None
    #: Output directory of the JSON-lines files, on the workers' file system (None: none).
    out_dir: str | None = None
    #: SDK worker processes per TaskManager (None: one per slot of the job's parallelism).
    sdk_workers: int | None = None
    #: Seconds to wait for the job to run.
    timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.flink_master is not None:
            rest_url(self.flink_master)
        if not self.job_server_jar:
            raise ValueError("job_server_jar: the Beam Flink job-server jar is required (scripts/flink-job-server.sh fetch)")
        if not Path(self.job_server_jar).is_file():
            raise ValueError(f"job_server_jar: no such file {self.job_server_jar!r}")
        host, sep, port = self.worker_pool.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"worker_pool: expected HOST:PORT, got {self.worker_pool!r}")
        if self.parallelism is not None and self.parallelism < 1:
            raise ValueError(f"parallelism: must be >= 1, got {self.parallelism!r}")
        if self.sdk_workers is not None and self.sdk_workers < 1:
            raise ValueError(f"sdk_workers: must be >= 1, got {self.sdk_workers!r}")
        if not self.checkpoint_interval > 0:
            raise ValueError(f"checkpoint_interval: must be > 0 seconds, got {self.checkpoint_interval!r}")


def pipeline_args(submission: Submission, job_name: str) -> list[str]:
    """The Beam pipeline options of a submission."""
    master = "[auto]" if submission.flink_master is None else rest_url(submission.flink_master).removeprefix("http://")
    args = [
        "--runner=FlinkRunner", f"--flink_master={master}", f"--flink_version={submission.flink_version}",
        f"--flink_job_server_jar={submission.job_server_jar}", "--environment_type=EXTERNAL",
        f"--environment_config={submission.worker_pool}", "--streaming", f"--job_name={job_name}",
        f"--checkpointing_interval={int(submission.checkpoint_interval * 1000)}",
        f"--sdk_worker_parallelism={submission.sdk_workers or submission.parallelism or 1}",
        "--externalized_checkpoints_enabled", "--retain_externalized_checkpoints_on_cancellation",
        # finish each bundle before a checkpoint barrier: otherwise Beam's Flink operators
        # keep the bundle's output in the checkpoint and emit it only with the next input,
        # which the steps after the Kafka source's Impulse never get (the job stalls)
        "--finish_bundle_before_checkpointing",
    ]
    if submission.parallelism is not None:
        args.append(f"--parallelism={submission.parallelism}")
    if submission.savepoint:
        args.append(f"--savepoint_path={submission.savepoint}")
    return args


def _out_dir(submission: Submission) -> str | None:
    if not submission.out_dir:
        return None
    out = Path(submission.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES.values():
        (out / name).touch()  # appended to, never truncated: a restored job continues them
    return str(out)


def export_jar(config: Config, submission: Submission, path: str, beam_args: Sequence[str] = ()) -> Path:
    """Writes the Kafka job as a self-contained Flink job jar; returns its path.

    Raises:
        ValueError: for a config without a ``kafka`` section, or a job-server jar that is
            not self-contained (the written jar would lack Beam's classes).
    """
    if config.kafka is None:
        raise ValueError("kafka: the job needs a kafka section in the config")
    if submission.out_dir and not Path(submission.out_dir).is_absolute():
        raise ValueError(f"out_dir: the job jar writes on the cluster: give an absolute path, got {submission.out_dir!r}")
    specs = load_specs(config)
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    job_name = submission.job_name or "ampel-monitor"
    args = [*pipeline_args(replace(submission, flink_master=None), job_name), f"--output_executable_path={target}"]
    pipeline = beam.Pipeline(options=PipelineOptions([*args, *beam_args]))
    build(pipeline, config, specs, out_dir=submission.out_dir or None,
          kafka=KafkaSource(resources=True, labels=config.labels is not None))
    pipeline.run().wait_until_finish()
    with zipfile.ZipFile(target) as jar:
        names = set(jar.namelist())
    if "org/apache/beam/sdk/Pipeline.class" not in names:
        target.unlink()
        raise ValueError(f"--job-server-jar: {submission.job_server_jar} is not self-contained (no Beam SDK classes "
                         "went into the job jar); use scripts/flink-job-server.sh shaded")
    return target


def submit(config: Config, submission: Submission, beam_args: Sequence[str] = ()) -> FlinkJob:
    """Submits the Kafka job; returns it once Flink runs it.

    Raises:
        ValueError: for a config without a ``kafka`` section (or another config error).
        RuntimeError: naming what failed: the cluster is unreachable, the job failed to
            start, or it did not run within ``submission.timeout``.
    """
    if config.kafka is None:
        raise ValueError("kafka: submit needs a kafka section in the config")
    if submission.flink_master is None:
        raise ValueError("flink_master: the REST address of the cluster is required")
    rest = FlinkRest(submission.flink_master)
    rest.overview()  # fail now, naming the address, when the cluster does not answer
    specs = load_specs(config)
    out_dir = _out_dir(submission)
    job_name = submission.job_name or f"ampel-monitor-{uuid.uuid4().hex[:8]}"
    known = {job.id for job in rest.jobs()}
    options = PipelineOptions([*pipeline_args(submission, job_name), *beam_args])
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, specs, out_dir=out_dir,
          kafka=KafkaSource(resources=True, labels=config.labels is not None))
    result = pipeline.run()
    deadline = time.monotonic() + submission.timeout
    job = None
    while job is None:
        job = next((j for j in rest.jobs() if j.name == job_name and j.id not in known), None)
        if job is not None:
            break
        state = str(result.state)
        if state in ("FAILED", "CANCELLED", "STOPPED", "DONE") or state.endswith(("FAILED", "CANCELLED")):
            raise RuntimeError(f"flink job {job_name!r} did not start: the job server reports {state} "
                               "(its log is above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"flink job {job_name!r} did not appear at {rest.url} within {submission.timeout:g} s")
        time.sleep(0.5)
    running = rest.wait_for_state(job.id, {"RUNNING"} | TERMINAL_STATES, max(1.0, deadline - time.monotonic()))
    if running.state != "RUNNING":
        cause = rest.root_exception(job.id)
        raise RuntimeError(f"flink job {job.id} is {running.state}" + (f": {cause}" if cause else ""))
    return running
