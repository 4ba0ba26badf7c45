"""Kafka end to end: load generator rate, Kafka -> window metrics on Prism and Flink, latency.

Starts its own broker (scripts/kafka.sh, port 49092, data in a temporary directory).

1. ``loadgen`` as fast as it can (no pacing): predictions/s from one core, Avro and JSON.
2. The pipeline reading the topics it filled (``--stop-at-end``) on Prism and on Flink
   ``[local]``: events/s over the whole run (start-up included) and over its processing
   (from the first event read to the last window written). Avro again with the pipeline
   and its runner (Prism; Flink's job server) held to one core (CPU affinity; the broker
   keeps both).
3. Topics with half of the predictions labelled 0-60 minutes (event time, uniformly)
   later, read on Prism and on Flink ``[local]`` without and with a ``labels`` section
   (the streaming label join and quality windows), alternately ``--repeats`` times each:
   medians, and the labels' cost in events/s and in events per CPU second.
4. Latency on Prism: a live stream at ``--live-rate`` events/s for 60 s, 10 s tumbling
   windows; for each window, the time its metrics appeared minus its end.

Usage: python benchmarks/bench_kafka.py [--events 200000] [--live-rate 2000] [--repeats 3] [--labels-only]
(``--labels-only``: part 3 alone)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from common import print_table  # noqa: E402

PORT, CONTROLLER = 49092, 49093
#: windows of the replayed topics (parts 2 and 3)
WINDOWS = {"size": "5m", "slide": "1m", "allowed_lateness": "2m"}
BOOTSTRAP = f"127.0.0.1:{PORT}"


def script(name: str, *args: str, env: dict | None = None) -> str:
    result = subprocess.run(["bash", str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, check=True)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def make_topics(prefix: str) -> dict[str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic

    names = {k: f"{prefix}-{k}" for k in ("predictions", "labels", "resources", "alerts", "dead_letters")}
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(n, 2, 1) for n in names.values()]).values():
        future.result(30)
    return names


def write_config(workdir: Path, topics: dict, windows: dict, wire: str, labels: bool = False) -> Path:
    import yaml

    from ampel_monitor.demo_data import generate

    scenario = generate(workdir / "demo", seed=1, hours=0.2, rate_per_s=1)  # reference data of the three models
    config = yaml.safe_load(scenario.files["config"].read_text())
    for model in config["models"]:
        model["reference"] = str(workdir / "demo" / model["reference"])
    config["windows"] = windows
    if not labels:  # the labels topic is only read, and quality computed, with a labels section
        config.pop("labels", None)
    config["kafka"] = {"bootstrap": BOOTSTRAP, "topics": topics, "start": "earliest", "format": wire,
                       "idle_timeout": "2s", "watermark_skew": "2s", "group_id": f"bench-{time.time_ns()}"}
    config["sinks"] = {"out_dir": str(workdir / "out")}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def loadgen(topics: dict, events: int, wire: str, pace: bool = False, rate: float = 0, labelled: float = 0.0,
            label_delay: float = 60.0, label_delay_min: float | None = None, key: str = "model") -> dict:
    from ampel_monitor.config import KafkaTopics
    from ampel_monitor.loadgen import run_loadgen

    names = KafkaTopics(topics["predictions"], topics["labels"], topics["resources"], topics["alerts"],
                        topics["dead_letters"])
    rate = rate or events / 10
    stats = run_loadgen({"bootstrap.servers": BOOTSTRAP}, rate=rate, duration=events / rate, scenario="mixed",
                        wire=wire, topics=names, labelled_fraction=labelled, label_delay=label_delay,
                        label_delay_min=label_delay_min, pace=pace, out=open(os.devnull, "w"), key=key)
    return {"events": stats.predictions, "labels": stats.labels, "seconds": stats.seconds, "rate": stats.rate}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def events_read(port: int) -> float:
    """The pipeline's ``ampel_events_total``, summed over models (0 before it serves them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("ampel_events_total{"))


def run_pipeline(config: Path, out: Path, runner: list[str], extra: list[str], cores: set[int] | None = None) -> dict:
    """Runs the pipeline to its end. ``seconds`` is the whole run; ``processing`` runs from
    the first event read (polled on its /metrics) to the last window (metrics or quality)
    written, leaving out the start-up (imports, the runner, the job's submission) and the
    shut-down. ``cpu`` is the CPU time (user and system) of the pipeline's process and
    of the runner it starts and waits for (Prism). ``cores``: the CPUs the pipeline and
    the processes it starts may run on (all by default)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    port = free_port()
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "ampel_monitor.cli", "run", "--config", str(config), "--out",
                                str(out), "--metrics-port", str(port), *extra, *runner],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
    first_read = None
    while process.poll() is None:
        if first_read is None and events_read(port) > 0:
            first_read = time.time()
        time.sleep(0.05)
    seconds = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    log = process.stdout.read()
    if process.returncode != 0 or first_read is None:
        raise RuntimeError(log[-6000:])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    latest = {(m["model"], m["version"], m["window_end"]): m["count"] for m in metrics}
    dead = (out / "dead_letters.jsonl").read_text().splitlines()
    written = max((out / name).stat().st_mtime for name in ("metrics.jsonl", "quality.jsonl"))
    processing = written - first_read
    return {"seconds": seconds, "processing": processing, "cpu": cpu, "windows": len(metrics),
            "counted": sum(latest.values()), "dead": len(dead)}


def rates(events: int, result: dict) -> tuple[str, str, str, str]:
    return (f"{result['seconds']:.1f}", f"{events / result['seconds']:,.0f}", f"{result['processing']:.1f}",
            f"{events / result['processing']:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--live-rate", type=float, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs without and with labels, alternately")
    parser.add_argument("--labels-only", action="store_true", help="only the labels' cost (part 3)")
    args = parser.parse_args()
    prism = ["--runner=PrismRunner", f"--prism_location={script('prism.sh', 'build')}", "--environment_type=LOOPBACK"]
    jar = script("flink-job-server.sh", "fetch")  # first: the version is known once it is here
    flink = ["--runner=FlinkRunner", "--flink_master=[local]",
             f"--flink_version={script('flink-job-server.sh', 'flink-version')}",
             f"--flink_job_server_jar={jar}", "--environment_type=LOOPBACK"]
    rows = [("step", "events", "seconds", "events/s", "processing s", "events/s processing", "note")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = {"KAFKA_PORT": str(PORT), "KAFKA_CONTROLLER_PORT": str(CONTROLLER), "KAFKA_DATA": str(workdir / "kafka")}
        script("kafka.sh", "start", env=env)
        try:
            for wire in () if args.labels_only else ("avro", "json"):
                topics = make_topics(f"bench-{wire}")
                produced = loadgen(topics, args.events, wire)
                rows.append((f"loadgen ({wire}, one core)", f"{produced['events']:,}", f"{produced['seconds']:.1f}",
                             f"{produced['rate']:,.0f}", "", "", "no pacing, 20 numeric/categorical features per event"))
                for name, runner in (("prism", prism), ("flink [local]", flink)):
                    out = workdir / f"out-{wire}-{name.split()[0]}"
                    config = write_config(workdir / f"{wire}-{name.split()[0]}", topics, WINDOWS, wire)
                    result = run_pipeline(config, out, runner, ["--stop-at-end"])
                    rows.append((f"Kafka -> metrics on {name} ({wire})", f"{produced['events']:,}",
                                 *rates(produced["events"], result), f"{result['windows']} window results"))
                if wire == "avro":
                    core = max(os.sched_getaffinity(0))
                    for name, runner, what in (("prism", prism, "Prism"), ("flink [local]", flink, "its Flink")):
                        out = workdir / f"out-avro-one-core-{name.split()[0]}"
                        config = write_config(workdir / f"avro-one-core-{name.split()[0]}", topics, WINDOWS, wire)
                        result = run_pipeline(config, out, runner, ["--stop-at-end"], {core})
                        rows.append((f"Kafka -> metrics on {name} (avro, one core)", f"{produced['events']:,}",
                                     *rates(produced["events"], result),
                                     f"{result['windows']} window results; the pipeline and {what} on CPU {core} only"))
            rows += labels_cost(workdir, {"prism": prism, "flink [local]": flink}, args.events, args.repeats)
            if not args.labels_only:
                latency = live_latency(workdir, prism, args.live_rate)
                rows.append(("live on prism: window emitted after its end", f"{latency['events']:,}", "",
                             f"{args.live_rate:,.0f} offered", "", "",
                             f"p50 {latency['p50']:.1f} s, max {latency['max']:.1f} s over {latency['windows']} windows"))
        finally:
            script("kafka.sh", "stop", "--wipe", env=env)
    print_table(rows)


def labels_cost(workdir: Path, runners: dict[str, list[str]], events: int, repeats: int) -> list[tuple]:
    """The same labelled topics read without and with a ``labels`` section, alternately,
    ``repeats`` times each on each runner: the medians and what the labels cost."""
    import statistics

    topics = make_topics("bench-labels")
    produced = loadgen(topics, events, "avro", labelled=0.5, label_delay=3600, label_delay_min=0)
    configs = {False: write_config(workdir / "labels-off", topics, WINDOWS, "avro"),
               True: write_config(workdir / "labels-on", topics, WINDOWS, "avro", labels=True)}
    rows = []
    for name, runner in runners.items():
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for i in range(repeats):
            for labels, config in configs.items():
                out = workdir / f"out-labels-{name.split()[0]}-{labels}-{i}"
                runs[labels].append(run_pipeline(config, out, runner, ["--stop-at-end"]))
        median = {}
        for labels, results in runs.items():
            median[labels] = {key: statistics.median(r[key] for r in results) for key in ("seconds", "processing", "cpu")}
            last = results[-1]
            each = ", ".join(f"{r['seconds']:.1f}" for r in results)
            note = (f"median of {repeats} ({each} s), CPU {median[labels]['cpu']:.1f} s; "
                    + ("50 % labelled 0-60 min later: the streaming join; "
                       f"{last['counted'] / 5 / produced['events']:.0%} of events in windows, {last['dead']} dead letters"
                       if labels else "the same topics, no labels section: the labels are not read"))
            rows.append((f"Kafka -> metrics {'+ labels ' if labels else ''}on {name} (avro, labelled topics)",
                         f"{produced['events']:,}", *rates(produced["events"], median[labels]), note))
        cost = {key: 1 - median[False][key] / median[True][key] for key in ("seconds", "processing", "cpu")}
        rows.append((f"labels' cost on {name} (medians)", "", "", f"{cost['seconds']:.1%} of events/s", "",
                     f"{cost['processing']:.1%} of events/s",
                     f"target <= 30 %; {cost['cpu']:.1%} of events per CPU second (the pipeline and its runner)"))
    return rows


def live_latency(workdir: Path, prism: list[str], rate: float) -> dict:
    import numpy as np

    topics = make_topics("bench-live")
    config = write_config(workdir / "live", topics, {"size": "10s", "slide": "10s", "allowed_lateness": "30s"}, "avro")
    out = workdir / "out-live"
    out.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "ampel_monitor.cli", "run", "--config", str(config), "--out",
                                str(out), "--stop-when-idle", "15", *prism], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=ROOT)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            path = out / "metrics.jsonl"
            if path.is_file():
                now = time.time()
                for line in path.read_text().splitlines():
                    seen.setdefault(json.loads(line)["window_end"], now)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(10)
    produced = loadgen(topics, int(rate * 60), "avro", pace=True, rate=rate)
    process.wait(timeout=300)
    time.sleep(1)
    stop.set()
    delays = [t - datetime.fromisoformat(end).timestamp() for end, t in seen.items()]
    return {"events": produced["events"], "p50": float(np.median(delays)), "max": max(delays), "windows": len(delays)}


if __name__ == "__main__":
    main()
