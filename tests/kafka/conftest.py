"""A real Kafka broker and the streaming runners, started by the project's own scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.services import PORT_OFFSET

ROOT = Path(__file__).resolve().parents[2]
PORT, CONTROLLER_PORT = 29092 + PORT_OFFSET, 29093 + PORT_OFFSET
BOOTSTRAP = f"127.0.0.1:{PORT}"


def _script(name: str, *args: str, env: dict | None = None) -> str:
    result = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=False, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


class Broker:
    """The test broker: start, stop and restart it, make topics, produce and consume."""

    def __init__(self, data: Path) -> None:
        self.env = {"KAFKA_PORT": str(PORT), "KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT), "KAFKA_DATA": str(data)}

    def start(self) -> None:
        _script("kafka.sh", "start", env=self.env)

    def stop(self, wipe: bool = False) -> None:
        _script("kafka.sh", "stop", *(["--wipe"] if wipe else []), env=self.env)

    def topics(self, prefix: str, partitions: int = 2) -> dict[str, str]:
        prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
        names = {kind: f"{prefix}-{kind}" for kind in ("predictions", "labels", "resources", "alerts", "dead_letters")}
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names.values()])
        for future in futures.values():
            future.result(timeout=30)
        return names

    @staticmethod
    def produce(topic: str, messages: list[tuple[str | None, bytes]]) -> None:
        producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "linger.ms": 5})
        for key, value in messages:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(60) == 0

    @staticmethod
    def consume_all(topic: str, idle: float = 3.0) -> list:
        consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"check-{uuid.uuid4()}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out, last = [], time.monotonic()
        while time.monotonic() - last < idle:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                out.append(message)
                last = time.monotonic()
        consumer.close()
        return out


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop(wipe=True)


@pytest.fixture(scope="session")
def prism_args() -> list[str]:
    return ["--runner=PrismRunner", f"--prism_location={_script('prism.sh', 'build')}", "--environment_type=LOOPBACK"]


@pytest.fixture(scope="session")
def flink_args() -> list[str]:
    jar = _script("flink-job-server.sh", "fetch")
    version = _script("flink-job-server.sh", "flink-version")
    return ["--runner=FlinkRunner", "--flink_master=[local]", f"--flink_version={version}",
            f"--flink_job_server_jar={jar}", "--environment_type=LOOPBACK"]


def kafka_config(base: Path, topics: dict[str, str], windows: dict, **kafka: object) -> Path:
    """Adds a kafka section to the config that ``write_setup`` wrote."""
    path = base / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["windows"] = windows
    config["kafka"] = {"bootstrap": BOOTSTRAP, "topics": topics, "start": "earliest", "idle_timeout": "2s",
                       "watermark_skew": "2s", "group_id": f"ampel-{uuid.uuid4()}", **kafka}
    path.write_text(yaml.safe_dump(config))
    return path


def start_pipeline(config: Path, out: Path, runner_args: list[str], stop_when_idle: float) -> subprocess.Popen:
    """Starts ``ampel-monitor run`` on Kafka; its output goes to ``out``/../pipeline.log."""
    log = open(out.parent / "pipeline.log", "w")  # a pipe nobody reads would fill up and block it
    process = subprocess.Popen(
        [sys.executable, "-m", "ampel_monitor.cli", "run", "--config", str(config), "--out", str(out),
         "--stop-when-idle", str(stop_when_idle), *runner_args],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    process.log_path = out.parent / "pipeline.log"  # type: ignore[attr-defined]
    return process


def output(process: subprocess.Popen) -> str:
    """The end of what the pipeline printed."""
    return process.log_path.read_text()[-4000:]  # type: ignore[attr-defined]


def lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the pipeline ended before {what}:\n{output(process)}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")
