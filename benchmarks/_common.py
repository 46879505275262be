"""Helpers shared by the benchmark scripts (not a benchmark: `run_all.py` runs `bench_*.py` only)."""

from __future__ import annotations

import tempfile
from pathlib import Path

MODEL_HELP = "embedded, a model folder, or 'tiny' (random, quick)"


def bench_model(name: str) -> str:
    """The model to load: `tiny` builds a small random model in a temporary folder; anything else is kept."""
    if name != "tiny":
        return name
    from ftrl.train.tiny import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", hidden=64))
