"""The Avro schemas of ampel-monitor's records, parsed with fastavro.

``PredictionEvent``, ``LabelEvent`` and ``ResourceSample`` come in; ``WindowMetrics``,
``QualityMetrics``, ``VersionComparison``, ``Alert`` and ``DeadLetter`` go out. New fields always carry defaults, so a reader with
a newer schema reads older records.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

__all__ = ["SCHEMA_FILES", "load_schema"]

_HERE = Path(__file__).resolve().parent

#: Record name to schema file. WindowMetrics comes first: Alert and others reuse nothing
#: of it, but parsing in this order registers every named type once.
SCHEMA_FILES = {
    "WindowMetrics": "window_metrics.avsc",
    "PredictionEvent": "prediction_event.avsc",
    "LabelEvent": "label_event.avsc",
    "ResourceSample": "resource_sample.avsc",
    "Alert": "alert.avsc",
    "DeadLetter": "dead_letter.avsc",
    "QualityMetrics": "quality_metrics.avsc",
    "VersionComparison": "version_comparison.avsc",
}


@cache
def load_schema(name: str) -> Any:
    """Returns the parsed schema of record ``name`` (e.g. ``"PredictionEvent"``).

    Raises:
        ValueError: if there is no such schema.
    """
    if name not in SCHEMA_FILES:
        raise ValueError(f"unknown schema {name!r}, expected one of {sorted(SCHEMA_FILES)}")
    document = json.loads((_HERE / SCHEMA_FILES[name]).read_text(encoding="utf-8"))
    return fastavro.parse_schema(document, named_schemas={})
