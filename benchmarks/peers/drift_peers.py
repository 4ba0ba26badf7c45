"""Time a peer library (Evidently 0.7 or NannyML) on a drift-detection workload.

Run with the peer virtualenv's python (see ``scripts/bench-peers-venv.sh``)::

    python benchmarks/peers/drift_peers.py --reference ref.parquet \
        --current cur.parquet --numeric num_00,num_01 --categorical cat_0 \
        --peer nannyml --repeat 3

Parquet loading is not timed. One JSON line goes to stdout; a short sample of
the per-feature results goes to stderr so a human can see real work was done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
import warnings
from typing import Any

# Keep the peers quiet and offline: no usage telemetry, no warnings or log noise.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import pandas as pd  # noqa: E402

Sample = list[tuple[str, str, float]]  # (column, method, score)


def run_evidently(
    ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str], repeat: int
) -> tuple[dict[str, Any], Sample]:
    """Best-of-``repeat`` timing of an Evidently 0.7 ``DataDriftPreset`` report.

    Timed: wrapping both frames with ``Dataset.from_pandas`` (what ``Report.run``
    does itself for plain DataFrames; Evidently keeps no reusable reference state)
    plus ``Report.run(current, reference)``. ``run`` is eager: it computes every
    metric (and renders the plotly widgets, which cannot be switched off), so the
    snapshot's ``.dict()`` is a cheap serialisation and is done outside the timing.

    Args:
        ref: Reference frame.
        cur: Current frame.
        numeric: Numeric column names.
        categorical: Categorical column names.
        repeat: Number of timed repeats.

    Returns:
        The result fields for the JSON line and a per-feature sample.
    """
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    best = float("inf")
    snapshot = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        current = Dataset.from_pandas(cur, data_definition=definition)
        reference = Dataset.from_pandas(ref, data_definition=definition)
        snapshot = Report([DataDriftPreset()]).run(current, reference)  # current first
        best = min(best, time.perf_counter() - t0)
    assert snapshot is not None
    sample: Sample = [
        (m["config"]["column"], m["config"]["method"], float(m["value"]))
        for m in snapshot.dict()["metrics"]
        if m["config"].get("type", "").endswith("ValueDrift")
    ]
    return {"peer": "evidently", "version": evidently.__version__, "seconds": best}, sample


def run_nannyml(
    ref: pd.DataFrame, cur: pd.DataFrame, numeric: list[str], categorical: list[str], repeat: int
) -> tuple[dict[str, Any], Sample]:
    """Best-of-``repeat`` timing of NannyML's ``UnivariateDriftCalculator``.

    Timed: ``calculate(current)`` only; ``fit(reference)`` is timed separately
    (``fit_seconds``), as our own reference profile is also built beforehand.
    ``chunk_size=len(current)`` and no timestamp column make the whole current
    frame a single chunk. A fresh calculator is fitted per repeat, since
    ``calculate`` appends to the calculator's stored result.

    Args:
        ref: Reference frame.
        cur: Current frame.
        numeric: Numeric column names.
        categorical: Categorical column names.
        repeat: Number of timed repeats.

    Returns:
        The result fields for the JSON line and a per-feature sample.
    """
    import nannyml as nml

    best = best_fit = float("inf")
    result = None
    for _ in range(repeat):
        calc = nml.UnivariateDriftCalculator(
            column_names=numeric + categorical,
            treat_as_numerical=numeric or None,
            treat_as_categorical=categorical or None,
            continuous_methods=["kolmogorov_smirnov", "jensen_shannon"],
            categorical_methods=["chi2", "jensen_shannon"],
            chunk_size=len(cur),
        )
        t0 = time.perf_counter()
        calc.fit(ref)
        t1 = time.perf_counter()
        result = calc.calculate(cur)
        t2 = time.perf_counter()
        best_fit, best = min(best_fit, t1 - t0), min(best, t2 - t1)
    assert result is not None
    df = result.filter(period="analysis").to_df()
    sample: Sample = [
        (col, method, float(df[(col, method, "value")].iloc[0]))
        for col, method, field in df.columns
        if col != "chunk" and field == "value"
    ]
    return {
        "peer": "nannyml",
        "version": nml.__version__,
        "seconds": best,
        "fit_seconds": best_fit,
    }, sample


def main() -> None:
    """Parse the CLI, run the chosen peer and print the JSON result line."""
    ap = argparse.ArgumentParser(description="Time a peer drift library.")
    ap.add_argument("--reference", required=True, help="reference Parquet file")
    ap.add_argument("--current", required=True, help="current Parquet file")
    ap.add_argument("--numeric", default="", help="comma-separated numeric columns")
    ap.add_argument("--categorical", default="", help="comma-separated categorical columns")
    ap.add_argument("--peer", required=True, choices=["evidently", "nannyml"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    numeric = [c for c in args.numeric.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]
    if not numeric + categorical:
        ap.error("give at least one --numeric or --categorical column")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    ref = pd.read_parquet(args.reference, columns=numeric + categorical)
    cur = pd.read_parquet(args.current, columns=numeric + categorical)
    runner = run_evidently if args.peer == "evidently" else run_nannyml
    out, sample = runner(ref, cur, numeric, categorical, args.repeat)

    # Sample for humans: first and last numeric, first categorical feature.
    picks = set(numeric[:1] + numeric[-1:] + categorical[:1])
    for col, method, score in sample:
        if col in picks:
            print(f"[{args.peer}] {col:<12} {method:<32} {score:.6g}", file=sys.stderr)

    rows = len(cur)
    out = {
        "peer": out["peer"],
        "version": out["version"],
        "rows": rows,
        "seconds": out["seconds"],
        "rows_per_s": rows / out["seconds"],
        **({"fit_seconds": out["fit_seconds"]} if "fit_seconds" in out else {}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
