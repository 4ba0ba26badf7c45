"""The monitor on a real standalone Flink cluster (scripts/flink.sh): submitted the way CI
submits it (scripts/flink.sh submit -> ampel-monitor submit), stopped with a savepoint and
restarted from it; and run as the job jar a FlinkDeployment runs (scripts/flink.sh job-jar,
flink run), with its TaskManager killed in the middle of the run. Every window's totals
stay exact."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ampel_monitor.flink import FlinkRest
from drift.profile import ReferenceProfile
from tests.kafka.conftest import ROOT, kafka_config, lines, wait_for
from tests.kafka.test_kafka_it import AVRO, epoch_ms, latest_panes
from tests.pipeline.streams import START_MS, make_events, write_setup
from tests.pipeline.test_monitor_it import assert_window_matches
from tests.services import PORT_OFFSET

pytestmark = pytest.mark.it

WINDOW_MS = 10_000
REST_PORT, RPC_PORT, POOL_PORT = 28081 + PORT_OFFSET, 26123 + PORT_OFFSET, 25100 + PORT_OFFSET


class Cluster:
    """The test cluster: a JobManager, a TaskManager and the worker pool, on their own ports."""

    def __init__(self, data: Path) -> None:
        self.env = {**os.environ, "FLINK_DATA": str(data), "FLINK_REST_PORT": str(REST_PORT),
                    "FLINK_RPC_PORT": str(RPC_PORT), "FLINK_WORKER_POOL_PORT": str(POOL_PORT),
                    "PYTHON": sys.executable}
        self.master = f"127.0.0.1:{REST_PORT}"
        self.rest = FlinkRest(self.master)
        self.data = data

    def script(self, *args: str, timeout: float = 900) -> str:
        result = subprocess.run(["bash", str(ROOT / "scripts" / "flink.sh"), *args], capture_output=True, text=True,
                                env=self.env, check=False, timeout=timeout, cwd=ROOT)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/flink.sh {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return result.stdout

    def cli(self, *args: str, status: int = 0) -> str:
        """What ``ampel-monitor ARGS`` prints (stdout, or stderr when it should fail)."""
        result = subprocess.run([sys.executable, "-m", "ampel_monitor.cli", *args, "--flink-master", self.master],
                                capture_output=True, text=True, env=self.env, check=False, timeout=900, cwd=ROOT)
        if status:
            assert result.returncode == status, result.stderr
            return result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"ampel-monitor {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def submit(self, config: Path, out: Path, *extra: str) -> str:
        """The job id ``scripts/flink.sh submit`` prints."""
        stdout = self.script("submit", "--flink-master", self.master, "--config", str(config), "--out", str(out),
                             "--parallelism", "1", "--checkpoint-interval", "3s", *extra)
        return stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("flink"))
    cluster.script("start")
    yield cluster
    for job in cluster.rest.jobs():
        if job.state == "RUNNING":
            cluster.rest.cancel(job.id)
    cluster.script("stop")  # its logs stay in the test's temporary directory


def events_between(seed: int, start_ms: int, end_ms: int, n: int, prefix: str) -> list[dict]:
    """``n`` seeded events with timestamps spread over [start_ms, end_ms).

    Each carries a confidence, ``y`` and ``city``, so that a window of a single event still
    has every statistic the offline comparison checks.
    """
    template = make_events(seed=seed, minutes=1, per_minute=n)
    span = end_ms - start_ms
    return [{**e, "event_id": f"{prefix}{i}", "timestamp": start_ms + (e["timestamp"] - START_MS) * span // 60_000,
             "confidence": 0.75 if e["confidence"] is None else e["confidence"],
             "features": {**e["features"], "y": e["features"].get("y") or 1.0,
                          "city": e["features"].get("city") or "berlin"}}
            for i, e in enumerate(template)]


def produce(broker, topic: str, events: list[dict]) -> None:
    broker.produce(topic, [(e["model_id"], AVRO.encode(e)) for e in events])


def until(cluster: Cluster, job: str, condition, timeout: float, what: str) -> None:
    """``wait_for``, failing with the job's state, its last failure and the workers' log."""
    try:
        wait_for(condition, timeout, what)
    except AssertionError:
        state, cause = cluster.rest.job(job).state, cluster.rest.root_exception(job)
        log = (cluster.data / "log" / "worker-pool.log").read_text()[-3000:]
        raise AssertionError(f"timed out waiting for {what}: job {job} {state}, last failure {cause}\n"
                             f"worker pool log:\n{log}") from None


def counted(out: Path) -> int:
    return sum(m["count"] for m in latest_panes(lines(out / "metrics.jsonl")).values())


def assert_exact(out: Path, events: list[dict], base: Path) -> None:
    """Each window's final pane equals the offline computation over ``events``; every
    event is in exactly one (tumbling) window; nothing was dead-lettered."""
    final = latest_panes(lines(out / "metrics.jsonl"))
    profiles = {m: ReferenceProfile.load(base / f"{m}.json") for m in ("alpha", "beta")}
    for metrics in final.values():
        assert_window_matches(metrics, events, profiles[metrics["model"]], WINDOW_MS)
    expected = {(e["model_id"], e["model_version"], e["timestamp"] // WINDOW_MS * WINDOW_MS + WINDOW_MS)
                for e in events}
    assert {(m, v, epoch_ms(end)) for m, v, end in final} == expected
    assert sum(m["count"] for m in final.values()) == len(events)
    assert lines(out / "dead_letters.jsonl") == []


def test_submit_stop_with_savepoint_and_restart_loses_nothing(tmp_path, broker, cluster):
    topics = broker.topics("flink-savepoint")
    write_setup(tmp_path, [], {})
    config = kafka_config(tmp_path, topics, {"size": "10s", "slide": "10s", "allowed_lateness": "1m"})
    out = tmp_path / "out"
    now = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    first = events_between(71, now - 70_000, now - 10_000, 600, "a")
    produce(broker, topics["predictions"], first)

    job = cluster.submit(config, out)
    assert cluster.rest.job(job).state == "RUNNING"
    listed = cluster.cli("jobs").splitlines()
    assert any(line.startswith(job) and " RUNNING " in line for line in listed), listed
    until(cluster, job, lambda: counted(out) == len(first), 180, "the first events' windows")

    stopped_at = int(time.time() * 1000)
    savepoint = cluster.cli("cancel", job, "--savepoint", str(tmp_path / "savepoints")).strip()
    assert savepoint.startswith("file:") and Path(savepoint.removeprefix("file:")).is_dir(), savepoint
    assert cluster.rest.job(job).state == "FINISHED"
    unknown = "0" * 32
    error = cluster.cli("cancel", unknown, "--savepoint", status=1)
    assert error.startswith(f"ampel-monitor: error: flink savepoint of job {unknown} failed: "), error
    assert error.rstrip().endswith(f"FlinkJobNotFoundException: Could not find Flink job ({unknown}))"), error
    error = cluster.cli("cancel", unknown, status=1)
    assert error.startswith(f"ampel-monitor: error: flink REST PATCH http://{cluster.master}/jobs/{unknown}?mode=cancel"
                            ": HTTP 404: "), error

    # events that arrive while no job runs, read by the restored job from the saved offsets
    time.sleep(2)
    second = events_between(72, stopped_at, int(time.time() * 1000), 300, "b")
    produce(broker, topics["predictions"], second)
    restored = cluster.submit(config, out, "--savepoint", savepoint)
    assert restored != job
    assert cluster.rest.checkpoints(restored).restored == 1  # from the savepoint
    until(cluster, restored, lambda: counted(out) == len(first) + len(second), 180, "the second events' windows")
    time.sleep(5)  # nothing more comes: no replay of the first events
    assert_exact(out, first + second, tmp_path)
    cluster.rest.cancel(restored)
    cluster.rest.wait_for_state(restored, {"CANCELED"}, 60)


def test_taskmanager_killed_mid_run_recovers_from_the_last_checkpoint(tmp_path, broker, cluster):
    topics = broker.topics("flink-recovery")
    write_setup(tmp_path, [], {})
    config = kafka_config(tmp_path, topics, {"size": "10s", "slide": "10s", "allowed_lateness": "1m"})
    out = tmp_path / "out"
    now = int(time.time() * 1000) // WINDOW_MS * WINDOW_MS
    first = events_between(81, now - 70_000, now - 10_000, 600, "a")
    produce(broker, topics["predictions"], first)
    jar = tmp_path / "job.jar"
    printed = cluster.script("job-jar", "--config", str(config), "--output-jar", str(jar), "--out", str(out),
                             "--parallelism", "1", "--checkpoint-interval", "3s")
    assert printed.strip().splitlines()[-1] == str(jar)
    out.mkdir()  # on a cluster, a volume mounted there
    job = cluster.script("run-jar", str(jar)).strip().splitlines()[-1]
    cluster.rest.wait_for_state(job, {"RUNNING"}, 120)
    until(cluster, job, lambda: counted(out) > 0, 180, "the first windows")
    checkpoints = cluster.rest.checkpoints(job).completed
    wait_for(lambda: cluster.rest.checkpoints(job).completed > checkpoints, 60, "a checkpoint after the first windows")

    cluster.script("kill-taskmanager")
    killed_at = int(time.time() * 1000)
    second = events_between(82, killed_at - 5_000, killed_at, 300, "b")
    produce(broker, topics["predictions"], second)
    assert cluster.rest.root_exception(job) is None  # no failure before the kill
    # noticed: the job restarts, or (its RESTARTING state can be shorter than a poll) it records the failure
    wait_for(lambda: cluster.rest.job(job).state in ("RESTARTING", "INITIALIZING", "CREATED")
             or cluster.rest.root_exception(job) is not None, 60, "the job to notice the lost TaskManager")
    cluster.script("start-taskmanager")
    cluster.rest.wait_for_state(job, {"RUNNING"}, 180)
    wait_for(lambda: cluster.rest.checkpoints(job).restored >= 1, 120, "the restore from a checkpoint")
    until(cluster, job, lambda: counted(out) == len(first) + len(second), 180, "every window after the recovery")
    time.sleep(5)
    assert_exact(out, first + second, tmp_path)
    cluster.rest.cancel(job)
    cluster.rest.wait_for_state(job, {"CANCELED"}, 60)
