"""Mergeable sketches: pure numpy, no Apache Beam import.

* ``DDSketch``: relative-error quantiles (latency, confidence).
* ``FixedHistogram``: counts on fixed bin edges (numeric features).
* ``CategoryCounter``: counts over a bounded set of categories (categorical features).

Every sketch has ``add``, vectorised ``add_many``, in-place ``merge``, ``copy`` and a
versioned ``to_bytes``/``from_bytes`` encoding.
"""

from sketches.categorical import CategoryCounter
from sketches.ddsketch import DDSketch
from sketches.fixed_histogram import FixedHistogram
from sketches.mapping import LogarithmicMapping
from sketches.store import DenseStore

__all__ = [
    "CategoryCounter",
    "DDSketch",
    "DenseStore",
    "FixedHistogram",
    "LogarithmicMapping",
]
