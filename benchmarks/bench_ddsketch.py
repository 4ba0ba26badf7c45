"""Quantile sketch insert speed: ampel's DDSketch against ddsketch and datasketches (KLL).

Each implementation runs in its own process (so peak memory is its own) on the same
seeded lognormal values, on one core. ampel and datasketches insert the array at once;
ddsketch has no bulk insert, so it adds value by value, as its users do.

Usage: python benchmarks/bench_ddsketch.py [--values 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from common import best_of, peak_rss_mb, print_table, run_json  # noqa: E402

LEVELS = (0.5, 0.9, 0.99)


def measure(impl: str, n: int, repeat: int) -> dict:
    values = np.random.default_rng(0).lognormal(3.0, 1.0, n)
    truth = [float(np.quantile(values, q, method="lower")) for q in LEVELS]
    if impl == "ampel":
        from sketches import DDSketch

        def run():
            return DDSketch(0.01).add_many(values)

        seconds = best_of(repeat, run)
        sketch = run()
        estimates = sketch.quantiles(LEVELS)
    elif impl == "ddsketch":
        from ddsketch import DDSketch as PeerSketch

        def run():
            sketch = PeerSketch(0.01)
            add = sketch.add
            for value in values.tolist():
                add(value)
            return sketch

        seconds = best_of(1, run)  # value by value: one run is minutes enough
        sketch = run()
        estimates = [sketch.get_quantile_value(q) for q in LEVELS]
    elif impl == "datasketches-kll":
        from datasketches import kll_doubles_sketch

        def run():
            sketch = kll_doubles_sketch(200)
            sketch.update(values)
            return sketch

        seconds = best_of(repeat, run)
        sketch = run()
        estimates = [sketch.get_quantile(q) for q in LEVELS]
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    errors = [abs(e - t) / t for e, t in zip(estimates, truth)]
    return {"impl": impl, "values": n, "seconds": seconds, "values_per_s": n / seconds,
            "peak_rss_mb": peak_rss_mb(), "max_rel_error": max(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impl:
        print(json.dumps(measure(args.impl, args.values, args.repeat)))
        return
    results = [
        run_json([sys.executable, __file__, "--impl", impl, "--values", str(args.values), "--repeat", str(args.repeat)])
        for impl in ("ampel", "ddsketch", "datasketches-kll")
    ]
    base = results[0]["values_per_s"]
    rows = [("implementation", "values", "seconds", "values/s", "ampel is", "peak RSS MiB", "max rel. error p50/p90/p99")]
    for r in results:
        rows.append((r["impl"], f"{r['values']:,}", f"{r['seconds']:.3f}", f"{r['values_per_s'] / 1e6:.1f}M",
                     "1.0x" if r is results[0] else f"{base / r['values_per_s']:.1f}x faster",
                     f"{r['peak_rss_mb']:.0f}", f"{r['max_rel_error']:.4f}"))
    print_table(rows)


if __name__ == "__main__":
    main()
