"""The monitoring pipeline over an Avro file on the local runner, beside a decode-only run.

1M prediction events (default), 20 numeric and 2 categorical features, 3 models, one
hour of event time, in an Avro container file. Two runs, each in a process of its
own (peak RSS is its own):

* pipeline: ``ampel-monitor run`` on the local runner (FnApiRunner, one worker);
* decode-only: the same file decoded into the same columnar batches
  (``events.decode_event_file``), no Beam.

With ``--memory N``, also the pipeline over N events in the same hour of event time
(the same windows): state is O(bins), so peak RSS should not grow with N.

Usage: python benchmarks/bench_pipeline.py [--events 1000000] [--workdir DIR] [--memory 10000000]
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
os.environ.setdefault("OMP_NUM_THREADS", "1")

from common import peak_rss_mb, print_table, run_json  # noqa: E402

MODELS = ("m0", "m1", "m2")
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = ["cat_0", "cat_1"]
START_MS = 1_767_225_600_000


def make_data(workdir: Path, events: int, seed: int = 0, start_ms: int = START_MS, span_ms: int = 3_600_000) -> None:
    import fastavro
    import numpy as np
    import yaml

    from drift.profile import ReferenceProfile
    from schemas import load_schema

    rng = np.random.default_rng(seed)
    cats = np.array([f"c{i}" for i in range(8)], dtype=object)
    for model in MODELS:
        columns = {name: rng.normal(size=20_000) for name in NUMERIC}
        columns.update({name: rng.choice(cats, 20_000) for name in CATEGORICAL})
        columns["prediction"] = rng.choice(np.array(["yes", "no"], dtype=object), 20_000)
        columns["confidence"] = rng.uniform(0.5, 1, 20_000)
        ReferenceProfile.build(columns, prediction="prediction", confidence="confidence", resolution=200).save(
            workdir / f"{model}.json")
    schema = load_schema("PredictionEvent")

    def records():
        chunk = 100_000
        for first in range(0, events, chunk):
            n = min(chunk, events - first)
            ts = start_ms + (np.arange(first, first + n) * span_ms // events)
            numeric = rng.normal(size=(n, len(NUMERIC))).round(4).tolist()
            categorical = rng.choice(cats, (n, len(CATEGORICAL))).tolist()
            latency = rng.lognormal(3.5, 0.5, n).round(3).tolist()
            model = rng.integers(0, 3, n).tolist()
            confidence = rng.uniform(0.5, 1, n).round(4).tolist()
            for i in range(n):
                features = dict(zip(NUMERIC, numeric[i]))
                features.update(zip(CATEGORICAL, categorical[i]))
                yield {"event_id": f"e{first + i}", "model_id": MODELS[model[i]], "model_version": "v1",
                       "timestamp": int(ts[i]), "latency_ms": latency[i], "status": "ok", "error_code": None,
                       "features": features, "prediction": "yes" if i % 2 else "no", "confidence": confidence[i],
                       "attributes": {}, "attributions": None}

    with (workdir / "events.avro").open("wb") as handle:
        fastavro.writer(handle, schema, records(), codec="null")
    config = {"models": [{"id": m, "task": "classification", "reference": f"{m}.json"} for m in MODELS],
              "windows": {"size": "5m", "slide": "1m", "allowed_lateness": "2m"},
              "sinks": {"out_dir": str(workdir / "out")}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def measure_pipeline(workdir: Path) -> dict:
    from ampel_monitor.config import load_config
    from pipelines.monitor import run

    config = load_config(workdir / "config.yaml")
    started = time.perf_counter()
    summary = run(config, [str(workdir / "events.avro")], out_dir=str(workdir / "out"))
    seconds = time.perf_counter() - started
    events = sum(1 for _ in _events(workdir))
    return {"run": "pipeline (local runner)", "events": events, "seconds": seconds, "events_per_s": events / seconds,
            "peak_rss_mb": peak_rss_mb(), "windows": summary.windows}


def _events(workdir: Path):
    import fastavro

    with (workdir / "events.avro").open("rb") as handle:
        yield from fastavro.reader(handle)


def measure_decode(workdir: Path) -> dict:
    from ampel_monitor.config import load_config
    from ampel_monitor.events import EventDecoder, ModelSchema, decode_event_file
    from pipelines.monitor import load_specs

    config = load_config(workdir / "config.yaml")
    specs = load_specs(config)
    decoder = EventDecoder({m.id: ModelSchema.from_profile(specs[m.id].profile, m.task) for m in config.models},
                           config.windows.slide_ms)
    started = time.perf_counter()
    events = 0
    for batches, _ in decode_event_file(decoder, str(workdir / "events.avro"), 20_000):
        events += sum(len(b) for b in batches)
    seconds = time.perf_counter() - started
    return {"run": "decode only (columnar batches)", "events": events, "seconds": seconds,
            "events_per_s": events / seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temporary directory)")
    parser.add_argument("--memory", type=int, metavar="N", help="also run the pipeline over N events")
    parser.add_argument("--measure", choices=("pipeline", "decode"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        fn = measure_pipeline if args.measure == "pipeline" else measure_decode
        print(json.dumps(fn(args.workdir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if not (workdir / "events.avro").is_file():
            started = time.perf_counter()
            make_data(workdir, args.events)
            print(f"wrote {args.events:,} events in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        results = [run_json([sys.executable, __file__, "--measure", kind, "--workdir", str(workdir)])
                   for kind in ("decode", "pipeline")]
        if args.memory:
            big = workdir / f"events-{args.memory}"
            big.mkdir(exist_ok=True)
            if not (big / "events.avro").is_file():
                make_data(big, args.memory)
            results.append(run_json([sys.executable, __file__, "--measure", "pipeline", "--workdir", str(big)]))
    decode_rate = results[0]["events_per_s"]
    rows = [("run", "events", "seconds", "events/s", "share of decode-only", "peak RSS MiB")]
    for r in results:
        rows.append((r["run"], f"{r['events']:,}", f"{r['seconds']:.2f}", f"{r['events_per_s']:,.0f}",
                     f"{r['events_per_s'] / decode_rate:.0%}", f"{r['peak_rss_mb']:.0f}"))
    print_table(rows)


if __name__ == "__main__":
    main()
