"""Grafana dashboards as code: the executive, technical and data-science dashboards, built with
``grafana-foundation-sdk`` and written to ``dashboards/generated/<name>.json`` by
``python -m dashboards`` (``make dashboards``). See docs/dashboards.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import data_science, executive, technical

__all__ = ["DASHBOARDS", "GENERATED", "render"]

#: Each dashboard's file name (without ``.json``) and its builder.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "executive": executive.build,
    "technical": technical.build,
    "data_science": data_science.build,
}
#: Where the JSON files go; Grafana's dashboard provisioning reads this folder.
GENERATED = Path(__file__).resolve().parent / "generated"


def render() -> dict[str, str]:
    """Every dashboard's JSON, by file name."""
    from dashboards.common import to_json

    return {f"{name}.json": to_json(build()) for name, build in DASHBOARDS.items()}
