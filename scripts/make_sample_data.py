"""Writes the seeded sample data sets of examples/ (a reference and a drifted current set).

Usage: python scripts/make_sample_data.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

REGIONS = ["north", "south", "east", "west", "central"]
CHANNELS = ["web", "mobile", "branch"]


def make(rows: int, seed: int, drifted: bool) -> pa.Table:
    """A loan-approval data set; ``drifted`` shifts income and the region mix."""
    rng = np.random.default_rng(seed)
    age = rng.normal(41, 12, rows).clip(18, 90).round()
    income = rng.lognormal(10.8 + (0.35 if drifted else 0.0), 0.45, rows).round(2)
    score = rng.normal(680, 60, rows).clip(300, 850).round()
    tenure = rng.gamma(2.0, 18.0, rows).round()
    region_p = [0.1, 0.15, 0.2, 0.25, 0.3] if drifted else [0.3, 0.25, 0.2, 0.15, 0.1]
    region = rng.choice(REGIONS, rows, p=region_p)
    channel = rng.choice(CHANNELS, rows, p=[0.5, 0.35, 0.15])
    logit = 0.012 * (score - 680) + 0.9 * (np.log(income) - 10.8) - 0.01 * (age - 41)
    proba = 1 / (1 + np.exp(-logit))
    prediction = np.where(proba > 0.5, "approve", "deny")
    confidence = np.maximum(proba, 1 - proba).round(4)
    truth_p = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.8, rows))))
    label = np.where(truth_p > 0.5, "approve", "deny")
    income[rng.random(rows) < 0.02] = np.nan  # some incomes are unknown
    return pa.table(
        {
            "age": age,
            "income": income,
            "credit_score": score,
            "tenure_months": tenure,
            "region": region,
            "channel": channel,
            "prediction": prediction,
            "confidence": confidence,
            "label": label,
        }
    )


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "examples")
    out.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(make(5000, seed=1, drifted=False), out / "reference.csv")
    pa_csv.write_csv(make(5000, seed=2, drifted=True), out / "current.csv")


if __name__ == "__main__":
    main()
