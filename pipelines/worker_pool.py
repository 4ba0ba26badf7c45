"""The Python worker pool of an EXTERNAL Beam environment, run beside a Flink TaskManager.

Beam's ``apache_beam.runners.worker.worker_pool_main`` listens on every interface,
starts workers with whatever ``python`` is first on ``PATH`` and gives them no state
cache. This pool is the same service with three differences:

* it listens on the address given (``127.0.0.1`` by default, or ``0.0.0.0`` in a
  Kubernetes pod whose TaskManager container reaches it over the pod network);
* each worker (one SDK harness process per environment the runner asks for) runs the
  interpreter of the pool itself, so the project and its pinned Beam are what run;
* workers get a state cache (``--state-cache-mb``), so window state read back from the
  runner is not fetched again for every bundle;
* workers are forks of the pool (``Forker``), which imported the pipeline's modules as
  it started: a worker spends no CPU on imports, where a new interpreter spent about 3 s
  (a worker starts as a job starts and after each restart).

Workers log to the pool's stderr. A worker's stdout is discarded. ``pipelines.prism``
starts the same pool in the launching process for the label side's worker on Prism.

Usage::

    python -m pipelines.worker_pool --port 50000 [--host 127.0.0.1] [--state-cache-mb 100]

and submit with ``--environment_type=EXTERNAL --environment_config=127.0.0.1:50000``.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import grpc
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc
from apache_beam.runners.worker import sdk_worker
from apache_beam.runners.worker.worker_pool_main import kill_process_gracefully
from apache_beam.utils import thread_pool_executor

__all__ = ["GC_THRESHOLDS", "WorkerPool", "main", "prefix_short_ids", "serve", "tune_gc", "worker_command"]

_LOG = logging.getLogger(__name__)


#: The garbage collector's thresholds in the pipeline's processes (Python's are 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Sets this process's garbage collector thresholds to ``GC_THRESHOLDS``.

    The pipeline allocates container objects by the million (a Kafka message object
    each, Beam's per-element machinery) over a heap of a few million long-lived ones
    (Beam, numpy, scipy and their modules): with Python's thresholds the collector ran
    its young generations every 700 allocations and the whole heap a dozen times per
    1.5M messages. Cycles are still collected, in fewer and larger passes.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def worker_command(control_endpoint: str, worker_id: str, state_cache_bytes: int, short_ids: str = "") -> list[str]:
    """The command line of one SDK harness process (this interpreter), with ``tune_gc``.

    ``short_ids``: a prefix for the worker's metric short ids (``prefix_short_ids``).

    >>> worker_command("localhost:1", "w1", 0)[-1].split("; ")[-1]
    "SdkHarness('localhost:1', worker_id='w1', state_cache_size=0, data_buffer_time_limit_ms=-1).run()"
    >>> worker_command("localhost:1", "w1", 0, "q")[-1].split("; ")[:3]
    ['from pipelines.worker_pool import prefix_short_ids, tune_gc', 'tune_gc()', "prefix_short_ids('q')"]
    """
    prelude = "from pipelines.worker_pool import prefix_short_ids, tune_gc; tune_gc(); "
    if short_ids:
        prelude += f"prefix_short_ids({short_ids!r}); "
    code = (f"{prelude}from apache_beam.runners.worker.sdk_worker import SdkHarness; "
            f"SdkHarness({control_endpoint!r}, worker_id={worker_id!r}, state_cache_size={state_cache_bytes}, "
            "data_buffer_time_limit_ms=-1).run()")
    return [sys.executable, "-c", code]


class _PrefixedShortIds(sdk_worker.ShortIdCache):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def get_short_id(self, monitoring_info: Any) -> str:
        return self._prefix + super().get_short_id(monitoring_info)

    def get_infos(self, short_ids: Iterable[str]) -> dict[str, Any]:
        infos = super().get_infos(short_id.removeprefix(self._prefix) for short_id in short_ids)
        return {self._prefix + short_id: info for short_id, info in infos.items()}


def prefix_short_ids(prefix: str) -> None:
    """Makes this process's metric short ids start with ``prefix`` (not a hex digit).

    A Python SDK worker numbers the metrics it reports 1, 2, 3... in hex, per process.
    Prism (Beam 2.77) keeps one short id table per job: a second worker process (another
    environment) would reuse the first one's ids for other metrics, and Prism fails the
    job when a payload does not decode as the metric its table names.
    """
    if any(c in "0123456789abcdef" for c in prefix):
        raise ValueError(f"short id prefix {prefix!r}: no hex digits (they would collide with unprefixed ids)")
    sdk_worker.SHORT_ID_CACHE = _PrefixedShortIds(prefix)


def _run_worker(control_endpoint: str, worker_id: str, state_cache_bytes: int, short_ids: str) -> None:
    """One SDK harness, in a process that ``Forker`` forked: what ``worker_command`` runs."""
    tune_gc()
    if short_ids:
        prefix_short_ids(short_ids)
    sdk_worker.SdkHarness(control_endpoint, worker_id=worker_id, state_cache_size=state_cache_bytes,
                          data_buffer_time_limit_ms=-1).run()


def _forked(target: Callable[..., Any], args: tuple[Any, ...], environ: Mapping[str, str]) -> None:
    """What a forked process runs: ``target(*args)`` with ``environ`` added to its environment."""
    os.environ.update(environ)
    if "PROMETHEUS_MULTIPROC_DIR" in environ:  # read by prometheus-client as it was imported, before the fork
        from transforms.counters import count_in_files

        count_in_files(environ["PROMETHEUS_MULTIPROC_DIR"])
    target(*args)


def _serve_forks(requests: Connection) -> None:
    """The forking process: a child forked for each request, its pid sent back; children
    reaped as they end (so that their CPU time counts as this process's children's)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ended by its pool, not by the terminal's Ctrl-C
    children: set[int] = set()
    while True:
        children -= {pid for pid in children if os.waitpid(pid, os.WNOHANG)[0]}
        try:
            if not requests.poll(0.1):
                continue
            request = requests.recv()
        except (EOFError, OSError):
            break
        pid = os.fork()
        if pid == 0:
            requests.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            status = 0
            try:
                _forked(*request)
            except BaseException:  # noqa: BLE001 (its last word, on the pool's stderr)
                traceback.print_exc()
                status = 1
            finally:
                os._exit(status)
        children.add(pid)
        requests.send(pid)
    for pid in children:  # the pool is gone: its workers end with their runner
        os.waitpid(pid, 0)


class Forker:
    """Starts worker processes as forks of this process, as it is when the ``Forker`` is made.

    A new interpreter spends seconds of CPU importing Beam, numpy, scipy and the project
    before its first bundle; a fork of a process that has imported them starts at once,
    and what it inherits is frozen out of its garbage collector's work (``gc.freeze``).
    Forking a process that runs gRPC threads is not safe, so the forks come from a child
    forked here, now, that does nothing else. Make the ``Forker`` before this process
    starts gRPC or other threads, after importing what the workers run (``preload``).
    """

    def __init__(self) -> None:
        ours, theirs = Pipe()
        gc.collect()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)  # as a worker's stdout was; stderr is the pool's log
                _serve_forks(theirs)
            finally:
                os._exit(0)
        gc.unfreeze()
        theirs.close()
        self.pid, self._requests, self._lock = pid, ours, threading.Lock()

    def start(self, target: Callable[..., Any], args: tuple[Any, ...] = (),
              environ: Mapping[str, str] | None = None) -> int:
        """Forks a process that runs ``target(*args)`` (a module-level function) with
        ``environ`` added to its environment; returns its pid."""
        with self._lock:
            self._requests.send((target, args, dict(environ or {})))
            return int(self._requests.recv())

    def close(self) -> None:
        """Ends the forking process once its children have ended (they are stopped apart)."""
        with self._lock:
            self._requests.close()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.02)
        stop_process(self.pid)


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds: a process this one or its
    ``Forker`` started."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:  # the forking process's child: gone once reaped there
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.02)


#: This process's ``Forker``, once ``start_forker`` made it: the pools' workers are forks.
_FORKER: Forker | None = None


def preload() -> None:
    """Imports the modules of the pipeline's functions and loads the compiled decoders."""
    import pipelines.monitor  # noqa: F401
    from ampel_monitor import avro_columns

    avro_columns.load_kernels()


def start_forker() -> Forker:
    """Makes the workers of this process's pools forks of it (``Forker``), with the
    pipeline's modules imported (``preload``). Call it at start-up, before gRPC or threads."""
    global _FORKER
    if _FORKER is None:
        preload()
        _FORKER = Forker()
        atexit.register(_FORKER.close)
    return _FORKER


class WorkerPool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    """Starts and stops SDK harness processes on the runner's request.

    Args:
        state_cache_bytes: the state cache of each worker, bytes.
        short_ids: a prefix for the workers' metric short ids (``prefix_short_ids``).
        environ: variables added to the workers' environment.
    """

    def __init__(self, state_cache_bytes: int, short_ids: str = "", environ: Mapping[str, str] | None = None) -> None:
        if state_cache_bytes < 0:
            raise ValueError(f"state cache size must be >= 0, got {state_cache_bytes!r}")
        self._state_cache_bytes, self._short_ids = state_cache_bytes, short_ids
        self._environ = {**os.environ, **environ} if environ else None
        self._extra = dict(environ or {})
        self._workers: dict[str, subprocess.Popen | int] = {}
        self._lock = threading.Lock()

    def StartWorker(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        try:
            _LOG.info("starting worker %s for %s", request.worker_id, request.control_endpoint.url)
            if _FORKER is not None:
                process: subprocess.Popen | int = _FORKER.start(
                    _run_worker, (request.control_endpoint.url, request.worker_id, self._state_cache_bytes,
                                  self._short_ids), self._extra)
            else:
                command = worker_command(request.control_endpoint.url, request.worker_id, self._state_cache_bytes,
                                         self._short_ids)
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, close_fds=True, env=self._environ)
            with self._lock:
                self._workers[request.worker_id] = process
            return beam_fn_api_pb2.StartWorkerResponse()
        except Exception as exc:  # the runner shows the error; the pool keeps serving
            return beam_fn_api_pb2.StartWorkerResponse(error=f"could not start worker {request.worker_id}: {exc!r}")

    def StopWorker(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        with self._lock:
            process = self._workers.pop(request.worker_id, None)
        if process is not None:
            _LOG.info("stopping worker %s", request.worker_id)
            _stop(process)
        return beam_fn_api_pb2.StopWorkerResponse()

    def stop_all(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for process in workers:
            _stop(process)


def _stop(process: subprocess.Popen | int) -> None:
    if isinstance(process, int):
        stop_process(process)
    else:
        kill_process_gracefully(process)


def serve(host: str, port: int, state_cache_bytes: int, short_ids: str = "",
          environ: Mapping[str, str] | None = None) -> tuple[grpc.Server, WorkerPool, int]:
    """Starts the pool's gRPC server; returns it, the pool and the bound port."""
    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)])
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"worker pool: cannot listen on {host}:{port}")
    pool = WorkerPool(state_cache_bytes, short_ids, environ)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    return server, pool, bound


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.worker_pool", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--state-cache-mb", type=int, default=100, help="state cache per worker, MiB (100)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    start_forker()
    try:
        server, pool, port = serve(args.host, args.port, args.state_cache_mb << 20)
    except (OSError, ValueError) as exc:
        print(f"worker pool: {exc}", file=sys.stderr)
        return 2
    _LOG.info("worker pool listening on %s:%d (python %s)", args.host, port, sys.executable)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    server.stop(5)
    pool.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
