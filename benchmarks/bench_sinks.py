"""Sink throughput against real servers, and what the sinks cost the pipeline.

Starts its own Prometheus (49090), Alertmanager (49094) and Elasticsearch (49200) with
the project's scripts and stops them at the end.

1. Prometheus remote write: window records of 22 features with
   ``RemoteWriter``: samples/s (170 per window), beside the encoding alone (protobuf + snappy).
2. Elasticsearch ``_bulk`` with ``BulkWriter``: window documents/s (22 features, about 190
   fields each) and decision-log documents/s, into indices that already exist.
3. The pipeline over the same Avro file (``bench_pipeline.py``'s data, 20 minutes of
   recent event time, so Prometheus accepts every window) on the local runner, each run
   in its own process: no sinks; Prometheus + Alertmanager + Elasticsearch; the same with
   the decision log on for every event.

Usage: python benchmarks/bench_sinks.py [--events 200000] [--windows 2000] [--documents 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from common import peak_rss_mb, print_table, run_json  # noqa: E402

PROM_PORT, AM_PORT, ES_PORT, ES_TRANSPORT_PORT = 49090, 49094, 49200, 49300
PROMETHEUS = f"http://127.0.0.1:{PROM_PORT}"
ALERTMANAGER = f"http://127.0.0.1:{AM_PORT}"
ELASTICSEARCH = f"http://127.0.0.1:{ES_PORT}"
MINUTE = 60_000


def script(name: str, *args: str, env: dict) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / name), *args], env={**os.environ, **env}, check=True,
                   stdout=subprocess.DEVNULL)


def window_records(n: int, features: int = 22) -> list[dict]:
    """``n`` window records of 100 models, one per model and minute, in the last 20 minutes."""
    from ampel_monitor.window import rfc3339

    end = (int(time.time() * 1000) // MINUTE - 1) * MINUTE
    entry = {"kind": "numeric", "count": 500, "psi": 0.05, "js": 0.04, "ks_statistic": 0.03, "ks_pvalue": 0.4,
             "missing_share": 0.0, "drifted": False}
    out = []
    for i in range(n):
        window_end = end - (i // 100) % 20 * MINUTE
        out.append({
            "model": f"bench-{i % 100}", "version": f"v{i // 2000}", "window_start": rfc3339(window_end - 300_000),
            "window_end": rfc3339(window_end), "count": 1000 + i, "errors": 3, "throughput_rps": 3.3, "error_rate": 0.003,
            "latency_ms": {"p50": 31.5, "p90": 60.2, "p95": 80.9, "p99": 150.0, "max": 410.0},
            "confidence": {"count": 1000, "mean": 0.8, "p10": 0.6, "p50": 0.8, "p90": 0.95, "below_threshold": 0.02},
            "features": {f"f{j:02d}": dict(entry, psi=0.01 * j) for j in range(features)},
            "drifted_features": [], "share_drifted": 0.0, "prediction_drift": None, "resources": None, "late": False,
        })
    return out


def bench_prometheus(windows: int) -> list[list[str]]:
    from ampel_monitor.config import PrometheusSink
    from ampel_monitor.remote_write import RemoteWriter, encode
    from ampel_monitor.series import window_series

    records = window_records(windows)
    started = time.perf_counter()
    samples = [s for r in records for s in window_series(r, "5m")]
    encode(samples)
    encoding = time.perf_counter() - started
    writer = RemoteWriter(PrometheusSink(url=f"{PROMETHEUS}/api/v1/write"), "5m")
    started = time.perf_counter()
    result = writer.write(records)
    seconds = time.perf_counter() - started
    assert not result.dead_letters, result.dead_letters[:1]
    return [["Prometheus remote write (2000 series/request)", f"{result.samples:,} samples",
             f"{result.samples / seconds:,.0f} samples/s"],
            ["  of which encoding (series + protobuf + snappy)", f"{len(samples):,} samples",
             f"{len(samples) / encoding:,.0f} samples/s"]]


def bench_elasticsearch(windows: int, documents: int) -> list[list[str]]:
    from ampel_monitor.config import ElasticsearchSink
    from ampel_monitor.elastic import BulkWriter

    writer = BulkWriter(ElasticsearchSink(hosts=(ELASTICSEARCH,), index_prefix="bench"))
    writer.install_templates()
    rows = []
    # the first documents create the day's index and its mapping: not part of the steady rate
    writer.write([("metrics", dict(r, model=f"warm-{r['model']}")) for r in window_records(100)])
    records = [("metrics", r) for r in window_records(windows)]
    base = int(time.time() * 1000)
    decisions = [("decisions", {"event_id": f"e{i}", "model": "m", "version": "v1", "timestamp": base - i,
                                "latency_ms": 12.5, "status": "ok", "prediction": "yes", "confidence": 0.9,
                                "features": {f"f{j:02d}": 0.5 * j for j in range(22)}}) for i in range(documents)]
    for what, batch in (("window documents", records), ("decision-log documents", decisions)):
        started = time.perf_counter()
        dead = writer.write(batch)
        seconds = time.perf_counter() - started
        assert not dead, dead[:1]
        rows.append([f"Elasticsearch _bulk, {what} (1000/request)", f"{len(batch):,} docs", f"{len(batch) / seconds:,.0f} docs/s"])
    writer.close()
    return rows


def measure(workdir: Path, variant: str) -> dict:
    """One pipeline run (in its own process): ``none``, ``all`` or ``all+decisions``."""
    import yaml

    from ampel_monitor.config import load_config
    from pipelines.monitor import run

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    out = workdir / f"out-{variant}"
    config["sinks"] = {"out_dir": str(out)}
    if variant != "none":
        config["sinks"].update({
            "prometheus": {"url": f"{PROMETHEUS}/api/v1/write"},
            "alertmanager": {"url": ALERTMANAGER},
            # prefixes that are not prefixes of each other: the templates' index patterns must not overlap
            "elasticsearch": {"hosts": [ELASTICSEARCH], "index_prefix": {"all": "pipeline1", "all+decisions": "pipeline2"}[variant],
                              "decision_log": {"enabled": variant == "all+decisions", "sample": 1.0}},
        })
    (workdir / f"config-{variant}.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    summary = run(load_config(workdir / f"config-{variant}.yaml"), [str(workdir / "events.avro")], out_dir=str(out))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "windows": summary.windows, "dead_letters": summary.dead_letters,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.workdir, args.measure)))
        return

    import bench_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        obs = {"PROM_PORT": str(PROM_PORT), "AM_PORT": str(AM_PORT),
               "PROM_DATA": str(workdir / "prometheus"), "AM_DATA": str(workdir / "alertmanager")}
        cache = Path(os.environ.get("AMPEL_CACHE", Path.home() / ".cache" / "ampel-monitor"))
        es = {"ES_PORT": str(ES_PORT), "ES_TRANSPORT_PORT": str(ES_TRANSPORT_PORT), "ES_DATA": str(cache / "bench-es-data")}
        script("observability.sh", "install", env=obs)
        script("observability.sh", "start", env=obs)
        script("elasticsearch.sh", "start", env=es)
        try:
            script("observability.sh", "wait", env=obs)
            script("elasticsearch.sh", "wait", env=es)
            rows = [["what", "size", "rate"]]
            rows += bench_prometheus(args.windows)
            rows += bench_elasticsearch(args.windows, args.documents)
            print_table(rows)

            start = (int(time.time() * 1000) // MINUTE - 21) * MINUTE
            bench_pipeline.make_data(workdir, args.events, start_ms=start, span_ms=20 * MINUTE)
            table = [["pipeline, local runner", "events", "seconds", "events/s", "vs no sinks", "peak RSS MiB"]]
            baseline = None
            for variant in ("none", "all", "all+decisions"):
                result = run_json([sys.executable, __file__, "--measure", variant, "--workdir", str(workdir)])
                assert not result["dead_letters"], result["dead_letters"]
                rate = args.events / result["seconds"]
                baseline = baseline or rate
                label = {"none": "no sinks (files only)", "all": "+ Prometheus, Alertmanager, Elasticsearch",
                         "all+decisions": "+ decision log of every event"}[variant]
                table.append([label, f"{args.events:,}", f"{result['seconds']:.1f}", f"{rate:,.0f}",
                              f"{rate / baseline:.0%}", f"{result['peak_rss_mb']:.0f}"])
            print()
            print_table(table)
        finally:
            script("elasticsearch.sh", "stop", "--wipe", env=es)
            script("observability.sh", "stop", "--wipe", env=obs)


if __name__ == "__main__":
    main()
