"""Runs the Prometheus and Alertmanager command-line tools from the repository root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``args`` in the repository root; fails (never skips) when the binary is missing."""
    if shutil.which(args[0]) is None:
        pytest.fail(f"{args[0]} is not on PATH: run `bash scripts/observability.sh install`")
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
