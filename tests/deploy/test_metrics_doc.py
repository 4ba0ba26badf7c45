"""docs/metrics.md names every window series and pipeline counter, and nothing else."""

from __future__ import annotations

import re

from ampel_monitor.series import SERIES
from tests.deploy.tools import ROOT
from transforms.counters import REGISTRY

DOC = (ROOT / "docs" / "metrics.md").read_text()


def _counters() -> set[str]:
    return {f"{metric.name}_total" for metric in REGISTRY.collect() if metric.type == "counter"}


def test_every_series_and_counter_is_documented():
    missing = sorted(name for name in {*SERIES, *_counters()} if f"`{name}`" not in DOC)
    assert not missing


def test_the_doc_names_no_unknown_metric():
    named = set(re.findall(r"\bampel_[a-z0-9_]+", DOC)) - {"ampel_monitor"}  # the package, in paths
    assert named - {*SERIES, *_counters()} == set()
