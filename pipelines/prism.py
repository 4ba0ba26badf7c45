"""Prism with the label side of the pipeline in a Python worker process of its own.

A Python SDK worker runs its bundles under one interpreter lock, and Prism gives each
environment one worker; with ``LOOPBACK`` that worker is a thread of the launching
process. Reading the predictions and computing their windows fill that worker, so the
labels' read, the join and the quality slices would wait their turn on the same core.
Transforms hinted ``WORKER_HINT`` get an environment of their own (Beam clones the
default one for a new set of resource hints); ``PrismRunner`` runs that environment in a
worker process started by an in-process ``pipelines.worker_pool``, and the rest as
Beam's does (a worker thread of this process).

Two things follow from a second worker process:

* its metrics' short ids are prefixed (``pipelines.worker_pool.prefix_short_ids``):
  Prism keeps one short id table per job;
* its Prometheus counters (labels joined, expired, dead letters of the label side) go
  to files in a temporary directory that ``/metrics`` adds to this process's
  (``transforms.counters.add_worker_counters``).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.portability import python_urns
from apache_beam.runners.portability import prism_runner
from apache_beam.transforms import environments
from apache_beam.transforms.resources import ResourceHint

from pipelines import worker_pool
from transforms.counters import add_worker_counters

__all__ = ["QUALITY_WORKER", "WORKER_HINT", "PrismRunner", "splits_workers"]

#: The resource hint naming the worker process a transform runs in.
WORKER_HINT = "ampel_worker"
#: The hints of the label side: the labels' read, the join and the quality slices.
QUALITY_WORKER = {WORKER_HINT: "quality"}
#: The state cache of the worker process (the join's state is read once per slide).
STATE_CACHE_BYTES = 100 << 20


class _WorkerHint(ResourceHint):
    """Which worker process runs a transform (any runner may ignore it)."""

    urn = "ampel-monitor:resource_hint:worker:v1"


ResourceHint.register_resource_hint(WORKER_HINT, _WorkerHint)


def splits_workers(options: PipelineOptions) -> bool:
    """Whether ``options`` run the pipeline on Prism with its workers in this process
    (``LOOPBACK``, Prism's default), where ``PrismRunner`` can start a second one."""
    runner = str(options.view_as(StandardOptions).runner or "").lower()
    environment = options.view_as(PortableOptions).environment_type
    return runner in ("prismrunner", "prism") and environment in (None, "LOOPBACK")


class PrismRunner(prism_runner.PrismRunner):
    """Prism, with each environment hinted ``WORKER_HINT`` in a worker process."""

    def start_and_replace_loopback_environments(self, pipeline: Any, options: PipelineOptions) -> list[Any]:
        hinted = [env for env in pipeline.components.environments.values()
                  if env.urn == python_urns.EMBEDDED_PYTHON_LOOPBACK and _WorkerHint.urn in env.resource_hints]
        cleanups = []
        if hinted:
            counters = Path(tempfile.mkdtemp(prefix="ampel-counters-"))
            atexit.register(shutil.rmtree, counters, True)
            add_worker_counters(counters)
            server, pool, port = worker_pool.serve("127.0.0.1", 0, STATE_CACHE_BYTES, short_ids="w",
                                                   environ={"PROMETHEUS_MULTIPROC_DIR": str(counters)})
            external = environments.ExternalEnvironment(f"127.0.0.1:{port}").to_runner_api(None)
            for env in hinted:
                env.urn, env.payload = external.urn, external.payload
            cleanups += [functools.partial(server.stop, 1), pool.stop_all]
        return [*cleanups, *super().start_and_replace_loopback_environments(pipeline, options)]
