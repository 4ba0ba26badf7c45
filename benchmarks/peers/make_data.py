"""Generate the synthetic drift data set used by the peer benchmark.

Writes ``ref.parquet`` and ``cur.parquet`` with 20 normal numeric features
``num_00``..``num_19`` (``num_00``..``num_04`` shifted by +0.5 in the current
frame) and two categorical string features ``cat_0``/``cat_1`` drawn from 8
categories (``cat_0`` has different frequencies in the current frame).

Example:
    python benchmarks/peers/make_data.py --out /tmp/peerdata --rows 100000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_NUMERIC = 20
N_SHIFTED = 5
SHIFT = 0.5
CATEGORIES = np.array([f"c{i}" for i in range(8)])
P_REF = np.array([0.30, 0.20, 0.15, 0.10, 0.10, 0.07, 0.05, 0.03])
P_CUR = np.array([0.15, 0.15, 0.15, 0.15, 0.10, 0.10, 0.10, 0.10])


def make_frame(rng: np.random.Generator, rows: int, current: bool) -> pa.Table:
    """Build one frame as a pyarrow table.

    Args:
        rng: Random generator (shared so reference and current differ).
        rows: Number of rows.
        current: Whether to apply the drift (shift / frequency change).

    Returns:
        The generated table.
    """
    cols: dict[str, np.ndarray] = {}
    for i in range(N_NUMERIC):
        x = rng.standard_normal(rows)
        if current and i < N_SHIFTED:
            x += SHIFT
        cols[f"num_{i:02d}"] = x
    cols["cat_0"] = rng.choice(CATEGORIES, size=rows, p=P_CUR if current else P_REF)
    cols["cat_1"] = rng.choice(CATEGORIES, size=rows, p=P_REF)
    return pa.table(cols)


def main() -> None:
    """Parse arguments and write ``ref.parquet`` and ``cur.parquet``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/peerdata"))
    ap.add_argument("--rows", type=int, default=100_000, help="rows per frame")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pq.write_table(make_frame(rng, args.rows, current=False), args.out / "ref.parquet")
    pq.write_table(make_frame(rng, args.rows, current=True), args.out / "cur.parquet")
    print(args.out / "ref.parquet", args.out / "cur.parquet")


if __name__ == "__main__":
    main()
