"""Kafka -> window metrics on the local standalone Flink cluster, at parallelism 1 and 2,
and the recovery time after a TaskManager is killed.

Starts its own broker (scripts/kafka.sh, port 49192) and cluster (scripts/flink.sh, REST
48081, worker pool 45100), data in a temporary directory. The job is submitted the way CI
submits it (scripts/flink.sh submit), EXTERNAL worker pool, 2 task slots.

1. Throughput: ``loadgen`` fills topics of 2 partitions (Avro, the demo's three models,
   keyed by event id so that both partitions hold every model's events: keyed by model,
   all three land in one of two partitions, and a second worker has nothing to read),
   then the job reads them from the earliest offsets at parallelism 1 and 2. Measured
   from the job running (submission excluded) until the consumer group's committed
   offsets reach the end of every partition ("read"); from the first offsets committed
   to the last ("after start-up": the workers' start is left out); and until the window
   metrics hold every event ("metrics": 10 s tumbling windows; the last ones close after
   the idle timeout of 2 s).
2. Recovery: a live stream at ``--live-rate`` events/s; the TaskManager is killed with
   SIGKILL and started again at once; measured from the kill until the job is RUNNING
   with every task running again, and until it completed a checkpoint after the restore.
   The final windows are checked to hold every event exactly once.

The read rows also give each Python worker's CPU seconds during the read: at parallelism
2, Beam's Flink runner binds each stage's subtasks to the SDK workers in the order it
creates them, and Flink spreads the partitions over the source's subtasks by a hash of
each partition's element, so one worker may do all the reading.

Usage: python benchmarks/bench_flink.py [--events 4000000] [--live-rate 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_kafka import loadgen, make_topics, write_config  # noqa: E402
from common import print_table  # noqa: E402

import bench_kafka  # noqa: E402

PORT, CONTROLLER = 49192, 49193
REST, RPC, POOL = 48081, 46123, 45100
bench_kafka.PORT, bench_kafka.BOOTSTRAP = PORT, f"127.0.0.1:{PORT}"


def script(name: str, *args: str, env: dict) -> str:
    result = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                            env={**os.environ, **env}, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)}: {result.stderr[-3000:]}")
    return result.stdout.strip()


class Lag:
    """Messages of the input topics the job's consumer group has not committed yet."""

    def __init__(self, config: dict) -> None:
        from confluent_kafka import Consumer, TopicPartition

        kafka = config["kafka"]
        self._consumer = Consumer({"bootstrap.servers": kafka["bootstrap"], "group.id": kafka["group_id"],
                                   "enable.auto.commit": False})
        self._partitions = []
        for kind in ("predictions", "resources"):
            topic = kafka["topics"][kind]
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            self._partitions += [TopicPartition(topic, p) for p in metadata.partitions]

    def __call__(self) -> int | None:
        from confluent_kafka import KafkaException

        try:
            lag = 0
            for tp in self._consumer.committed(self._partitions, timeout=10):
                _, high = self._consumer.get_watermark_offsets(tp, timeout=10)
                lag += high - max(tp.offset, 0)
            return lag
        except KafkaException:  # the group coordinator moving: ask again
            return None

    def close(self) -> None:
        self._consumer.close()


def counted(out: Path) -> tuple[int, int]:
    """Events in the final panes of metrics.jsonl, and lines that are not JSON."""
    final, broken = {}, 0
    path = out / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            m = json.loads(line)
        except ValueError:
            broken += 1
            continue
        final[(m["model"], m["version"], m["window_end"])] = m["count"]
    return sum(final.values()), broken


def wait(condition, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)
    return time.monotonic()


def worker_cpu() -> dict[int, float]:
    """CPU seconds of each Python SDK worker process so far: the forks of the worker
    pool's forking process (``pipelines.worker_pool.Forker``), the pool's grandchildren."""
    import psutil

    seconds = {}
    for pool in psutil.process_iter(["cmdline"]):
        try:
            if "pipelines.worker_pool" not in " ".join(pool.info["cmdline"] or ()):
                continue
            for forker in pool.children():
                for worker in forker.children():
                    times = worker.cpu_times()
                    seconds[worker.pid] = times.user + times.system
        except psutil.Error:
            pass
    return seconds


def throughput(workdir: Path, env: dict, master: str, events: int, parallelism: int) -> dict:
    import yaml

    from ampel_monitor.flink import FlinkRest

    topics = make_topics(f"bench-flink-p{parallelism}")
    produced = loadgen(topics, events, "avro", key="event")
    config_path = write_config(workdir / f"p{parallelism}", topics, {"size": "10s", "slide": "10s",
                                                                     "allowed_lateness": "1m"}, "avro")
    config = yaml.safe_load(config_path.read_text())
    out = workdir / f"out-p{parallelism}"
    job = script("flink.sh", "submit", "--flink-master", master, "--config", str(config_path), "--out", str(out),
                 "--parallelism", str(parallelism), env=env).splitlines()[-1]
    running = time.monotonic()
    cpu = worker_cpu()
    lag = Lag(config)

    def remaining() -> int:
        while (left := lag()) is None:  # the group coordinator moving
            time.sleep(0.1)
        return left

    backlog = remaining()
    first = wait(lambda: remaining() < backlog, 600, "the first offsets committed")
    after = remaining()
    read = wait(lambda: lag() == 0, 1800, "the job to read every message")
    busy = sorted((seconds - cpu.get(pid, 0.0) for pid, seconds in worker_cpu().items()), reverse=True)
    lag.close()
    done = wait(lambda: counted(out)[0] >= produced["events"], 600, "every event in the window metrics")
    total, broken = counted(out)
    FlinkRest(master).cancel(job)
    return {"events": produced["events"], "read_s": read - running, "metrics_s": done - running,
            "counted": total, "broken": broken, "first_s": first - running, "after_start": after / (read - first),
            "workers_cpu_s": busy}


def recovery(workdir: Path, env: dict, master: str, rate: float) -> dict:
    import yaml

    from ampel_monitor.flink import FlinkRest

    rest = FlinkRest(master)
    topics = make_topics("bench-flink-recovery")
    config_path = write_config(workdir / "recovery", topics, {"size": "10s", "slide": "10s",
                                                              "allowed_lateness": "1m"}, "avro")
    config = yaml.safe_load(config_path.read_text())
    out = workdir / "out-recovery"
    job = script("flink.sh", "submit", "--flink-master", master, "--config", str(config_path), "--out", str(out),
                 "--parallelism", "1", "--checkpoint-interval", "5s", env=env).splitlines()[-1]
    produced: dict = {}
    producer = threading.Thread(target=lambda: produced.update(loadgen(topics, int(rate * 60), "avro", pace=True,
                                                                       rate=rate)))
    producer.start()
    time.sleep(25)
    before = rest.checkpoints(job)
    killed = time.monotonic()
    script("flink.sh", "kill-taskmanager", env=env)
    script("flink.sh", "start-taskmanager", env=env)

    def all_running() -> bool:
        detail = rest._call("GET", f"/jobs/{job}")
        return detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"])

    wait(lambda: rest.checkpoints(job).restored > before.restored, 300, "the restore")
    running = wait(all_running, 300, "every task running again")
    after = rest.checkpoints(job)
    checkpointed = wait(lambda: rest.checkpoints(job).completed > after.completed, 300, "a checkpoint after the restore")
    producer.join()
    lag = Lag(config)
    wait(lambda: lag() == 0, 600, "the job to catch up")
    lag.close()
    wait(lambda: counted(out)[0] >= produced["events"], 300, "every event in the window metrics")
    time.sleep(5)
    total, broken = counted(out)
    rest.cancel(job)
    return {"events": produced["events"], "running_s": running - killed, "checkpoint_s": checkpointed - killed,
            "counted": total, "broken": broken}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--live-rate", type=float, default=1000)
    args = parser.parse_args()
    rows = [("step", "events", "seconds", "events/s", "note")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        kafka = {"KAFKA_PORT": str(PORT), "KAFKA_CONTROLLER_PORT": str(CONTROLLER), "KAFKA_DATA": str(workdir / "kafka")}
        flink = {"FLINK_DATA": str(workdir / "flink"), "FLINK_REST_PORT": str(REST), "FLINK_RPC_PORT": str(RPC),
                 "FLINK_WORKER_POOL_PORT": str(POOL), "PYTHON": sys.executable}
        master = f"127.0.0.1:{REST}"
        script("kafka.sh", "start", env=kafka)
        script("flink.sh", "start", env=flink)
        try:
            rates, steady = {}, {}
            for parallelism in (1, 2):
                result = throughput(workdir, flink, master, args.events, parallelism)
                rates[parallelism] = result["events"] / result["read_s"]
                steady[parallelism] = result["after_start"]
                exact = "exact" if result["counted"] == result["events"] else f"counted {result['counted']:,}"
                rows.append((f"Kafka -> metrics, parallelism {parallelism}: read", f"{result['events']:,}",
                             f"{result['read_s']:.1f}", f"{rates[parallelism]:,.0f}",
                             "job running -> all offsets committed; Python workers' CPU meanwhile: "
                             + " + ".join(f"{seconds:.1f}" for seconds in result["workers_cpu_s"]) + " s"))
                rows.append((f"Kafka -> metrics, parallelism {parallelism}: read after start-up", "",
                             f"{result['first_s']:.1f}", f"{result['after_start']:,.0f}",
                             "seconds: to the first offsets committed; events/s: from there on"))
                rows.append((f"Kafka -> metrics, parallelism {parallelism}: windows", f"{result['events']:,}",
                             f"{result['metrics_s']:.1f}", f"{result['events'] / result['metrics_s']:,.0f}",
                             f"-> last window written; totals {exact}; {result['broken']} broken lines"))
            rows.append(("speed-up at parallelism 2", "", "", f"{rates[2] / rates[1]:.2f}x", "read rates"))
            rows.append(("speed-up at parallelism 2, after start-up", "", "",
                         f"{steady[2] / steady[1]:.2f}x", "read rates after the first commit"))
            result = recovery(workdir, flink, master, args.live_rate)
            exact = "exact" if result["counted"] == result["events"] else f"counted {result['counted']:,}"
            rows.append(("TaskManager killed: all tasks running again", f"{result['events']:,}",
                         f"{result['running_s']:.1f}", f"{args.live_rate:,.0f} offered", f"totals {exact}"))
            rows.append(("TaskManager killed: first checkpoint after the restore", "", f"{result['checkpoint_s']:.1f}",
                         "", "checkpoint interval 5 s"))
        finally:
            script("flink.sh", "stop", "--wipe", env=flink)
            script("kafka.sh", "stop", "--wipe", env=kafka)
    print_table(rows)


if __name__ == "__main__":
    main()
