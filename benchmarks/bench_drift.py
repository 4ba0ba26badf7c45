"""Drift of 100k current rows against a 100k-row reference: ampel, Evidently and NannyML.

20 numeric and 2 categorical features (benchmarks/peers/make_data.py, seeded), read
from Parquet beforehand. Each side runs in its own process; the reference profile
(ampel) or fitted calculator (NannyML) is built beforehand and not timed, as in
monitoring, where the reference is profiled once. Timed for ampel: Arrow table to
columns, sketching every feature, and the full report (PSI, JS, KS, chi-square).
The peers run in their own virtualenv (scripts/bench-peers-venv.sh), since their pins
clash with this project's.

Usage: python benchmarks/bench_drift.py [--rows 100000] [--repeat 5] [--no-peers]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from common import best_of, peak_rss_mb, print_table, run_json  # noqa: E402

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = ["cat_0", "cat_1"]


def measure_ampel(data: Path, repeat: int) -> dict:
    import pyarrow.parquet as pq

    from ampel_monitor.io import arrow_to_columns
    from drift import ReferenceProfile, drift_report, sketch_columns

    names = NUMERIC + CATEGORICAL
    reference = arrow_to_columns(pq.read_table(data / "ref.parquet"), names)
    profile = ReferenceProfile.build(reference, numeric=NUMERIC, categorical=CATEGORICAL)
    current = pq.read_table(data / "cur.parquet")

    def run():
        return drift_report(profile, sketch_columns(profile, arrow_to_columns(current, names)))

    seconds = best_of(repeat, run)
    report = run()
    return {"peer": "ampel", "rows": current.num_rows, "seconds": seconds, "rows_per_s": current.num_rows / seconds,
            "peak_rss_mb": peak_rss_mb(), "drifted": report.drifted_features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="measure ampel only")
    parser.add_argument("--ampel-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ampel_only:
        print(json.dumps(measure_ampel(args.ampel_only, args.repeat)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        subprocess.run([sys.executable, str(HERE / "peers" / "make_data.py"), "--out", str(data),
                        "--rows", str(args.rows), "--seed", "0"], check=True)
        results = [run_json([sys.executable, __file__, "--ampel-only", str(data), "--repeat", str(args.repeat)])]
        print(f"ampel drifted features: {results[0]['drifted']}", file=sys.stderr)
        if not args.no_peers:
            setup = subprocess.run(["bash", str(HERE.parent / "scripts" / "bench-peers-venv.sh")],
                                   capture_output=True, text=True, check=True)
            peer_python = setup.stdout.strip().splitlines()[-1]
            for peer in ("nannyml", "evidently"):
                results.append(run_json([
                    peer_python, str(HERE / "peers" / "drift_peers.py"),
                    "--reference", str(data / "ref.parquet"), "--current", str(data / "cur.parquet"),
                    "--numeric", ",".join(NUMERIC), "--categorical", ",".join(CATEGORICAL),
                    "--peer", peer, "--repeat", str(min(args.repeat, 3)),
                ]))
    base = results[0]["rows_per_s"]
    rows = [("implementation", "current rows", "seconds", "rows/s", "ampel is", "peak RSS MiB")]
    for r in results:
        name = r["peer"] + (f" {r['version']}" if "version" in r else "")
        rows.append((name, f"{r['rows']:,}", f"{r['seconds']:.4f}", f"{r['rows_per_s']:,.0f}",
                     "1.0x" if r is results[0] else f"{base / r['rows_per_s']:.1f}x faster",
                     f"{r['peak_rss_mb']:.0f}"))
    print_table(rows)


if __name__ == "__main__":
    main()
