"""The coder of the pipeline's batches.

Beam measures the size of sampled elements on every edge of a fused stage by encoding
them; a batch of thousands of events (an ``EventBatch``, its ids and categorical values
Python objects) would be pickled again at each step between the reader and the slice
combiner. This coder pickles a batch only when it crosses a stage, and estimates its
size from its length and columns. It is registered for ``Batch`` (what the Kafka reader
emits: predictions, labels and resource samples together) and for each kind of batch.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import apache_beam as beam

from ampel_monitor.events import Batch, EventBatch, ResourceBatch
from ampel_monitor.labels import LabelBatch

__all__ = ["BatchCoder"]


class BatchCoder(beam.coders.Coder):
    """Pickles a ``Batch``; estimates its size without encoding it."""

    def encode(self, value: Batch) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Batch:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Batch) -> int:
        if isinstance(value, EventBatch):
            columns = 6 + len(value.features) + len(value.attributes) + len(value.attributions)
        else:
            columns = len(dataclasses.fields(value))
        return 8 * len(value) * columns

    def to_type_hint(self) -> Any:
        return Batch

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


for _kind in (Batch, EventBatch, LabelBatch, ResourceBatch):
    beam.coders.registry.register_coder(_kind, BatchCoder)
