"""What joining delayed labels costs the pipeline: the same events with and without labels.

bench_pipeline.py's data (default 200k events, 22 features, 3 models, one hour of event
time); half of the events get a label 0-59 minutes after them (``labels.max_delay`` 1 h),
in a JSON-lines file. Each run in a process of its own, on the local runner.

Usage: python benchmarks/bench_labels.py [--events 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from common import peak_rss_mb, print_table, run_json  # noqa: E402


def make_labels(workdir: Path, seed: int = 1) -> int:
    import fastavro
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 0
    with (workdir / "events.avro").open("rb") as source, (workdir / "labels.jsonl").open("w") as out:
        for event in fastavro.reader(source):
            if rng.random() < 0.5:
                label = event["prediction"] if rng.random() < 0.9 else ("no" if event["prediction"] == "yes" else "yes")
                delay = int(rng.integers(0, 59 * 60_000))
                out.write(json.dumps({"event_id": event["event_id"], "model_id": event["model_id"], "label": label,
                                      "timestamp": event["timestamp"] + delay}) + "\n")
                n += 1
    return n


def measure(workdir: Path, with_labels: bool) -> dict:
    import yaml

    from ampel_monitor.config import load_config
    from pipelines.monitor import run

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["labels"] = {"max_delay": "1h", "shards": int(os.environ.get("SHARDS", "4"))}
    (workdir / "config-labels.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    summary = run(load_config(workdir / "config-labels.yaml"), [str(workdir / "events.avro")],
                  out_dir=str(workdir / ("out-labels" if with_labels else "out")),
                  labels=[str(workdir / "labels.jsonl")] if with_labels else ())
    return {"seconds": time.perf_counter() - started, "quality_panes": len(summary.quality),
            "dead_letters": summary.dead_letters, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--measure", choices=("plain", "labels"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.workdir, args.measure == "labels")))
        return
    import bench_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench_pipeline.make_data(workdir, args.events)
        labels = make_labels(workdir)
        rows = [["run", "events", "labels", "seconds", "events/s", "vs no labels", "peak RSS MiB"]]
        baseline = None
        for variant in ("plain", "labels"):
            result = run_json([sys.executable, __file__, "--measure", variant, "--workdir", str(workdir)])
            assert not result["dead_letters"], result["dead_letters"]
            rate = args.events / result["seconds"]
            baseline = baseline or rate
            rows.append(["pipeline" if variant == "plain" else "pipeline + labels (join, quality windows)",
                         f"{args.events:,}", f"{labels if variant == 'labels' else 0:,}", f"{result['seconds']:.1f}",
                         f"{rate:,.0f}", f"{rate / baseline:.0%}", f"{result['peak_rss_mb']:.0f}"])
        print_table(rows)


if __name__ == "__main__":
    main()
