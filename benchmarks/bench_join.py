"""The label join's cost per tick: a shard's waiting state read, matched and written.

One tick of ``ampel_monitor.labels.PendingJoin`` as the streaming join does it once per
slide: unpickle the shard, add 20 batches of 1,250 predictions and 10 of 625 labels
(each meeting a waiting prediction), expire the oldest predictions, pickle. Prints
milliseconds per tick and the state's size for each number of waiting predictions.

    python benchmarks/bench_join.py [--waiting 10000 100000 500000] [--ticks 10]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ampel_monitor.events import EventBatch  # noqa: E402
from ampel_monitor.labels import LabelBatch, PendingJoin  # noqa: E402

MINUTE = 60_000
MAX_DELAY = 10**9  # expiry is driven by the watermark passed to expire


def predictions(first: int, n: int) -> EventBatch:
    """Predictions ``first`` .. ``first + n``, event time = id (ms)."""
    ids = np.array([f"e{i:09d}" for i in range(first, first + n)], dtype=object)
    return EventBatch("m", "v1", 0, np.arange(first, first + n, dtype=np.int64), np.ones(n), np.zeros(n, bool),
                      np.full(n, 0.7), np.array(["yes", "no"] * (n // 2) + ["yes"] * (n % 2), dtype=object), {}, ids,
                      {"sex": np.array(["f", "m"] * (n // 2) + ["f"] * (n % 2), dtype=object)})


def tick_ms(waiting: int, ticks: int) -> tuple[float, int]:
    """Per tick: 25,000 predictions in, 3,125 of them and of the older ones labelled, the
    oldest expired so that ``waiting`` predictions wait again (inputs built beforehand)."""
    join = PendingJoin(MAX_DELAY, MAX_DELAY, MINUTE, ("sex",))
    join.add_predictions(predictions(0, waiting))
    rng, inputs, next_id = np.random.default_rng(1), [], waiting
    for _ in range(ticks):
        batches = [predictions(next_id + k * 1250, 1250) for k in range(20)]
        next_id += 20 * 1250
        labels = []
        for _ in range(10):
            low = int(rng.integers(next_id - waiting, next_id - 1250))
            ids = np.array([f"e{i:09d}" for i in range(low, low + 1250, 2)], dtype=object)
            labels.append(LabelBatch("m", ids, np.array(["yes"] * ids.size, dtype=object),
                                     np.full(ids.size, next_id, dtype=np.int64)))
        inputs.append((batches, labels, next_id - waiting + MAX_DELAY))
    state = pickle.dumps(join, protocol=pickle.HIGHEST_PROTOCOL)
    started = time.perf_counter()
    for batches, labels, watermark in inputs:
        join = pickle.loads(state)
        for batch in batches:
            join.add_predictions(batch)
        for batch in labels:
            join.add_labels(batch)
        join.expire("m", watermark)
        state = pickle.dumps(join, protocol=pickle.HIGHEST_PROTOCOL)
    return (time.perf_counter() - started) / ticks * 1000, len(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, nargs="+", default=[10_000, 100_000, 500_000])
    parser.add_argument("--ticks", type=int, default=10)
    args = parser.parse_args()
    print(f"{'waiting':>10} {'ms/tick':>9} {'state MB':>9}")
    for waiting in args.waiting:
        ms, size = tick_ms(waiting, args.ticks)
        print(f"{waiting:>10,} {ms:>9.1f} {size / 1e6:>9.1f}")


if __name__ == "__main__":
    main()
