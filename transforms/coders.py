"""The coder of the pipeline's event batches.

Beam measures the size of sampled elements on every edge of a fused stage by encoding
them; an ``EventBatch`` of thousands of events, its ids and categorical values Python
objects, would be pickled again at each step between the file reader and the slice
combiner. This coder pickles a batch only when it crosses a stage, and estimates its
size from its length and columns.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam

from ampel_monitor.events import EventBatch

__all__ = ["EventBatchCoder"]


class EventBatchCoder(beam.coders.Coder):
    """Pickles an ``EventBatch``; estimates its size without encoding it."""

    def encode(self, value: EventBatch) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> EventBatch:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: EventBatch) -> int:
        columns = 6 + len(value.features) + len(value.attributes) + len(value.attributions)
        return 8 * len(value) * columns

    def to_type_hint(self) -> Any:
        return EventBatch

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(EventBatch, EventBatchCoder)
