"""Shared fixtures: the read-only sample data that sits beside the repository (`../shared/data`)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under `../shared/data`, skipping the test with a reason when the sample data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared sample data not found at {path}")
    return path


@pytest.fixture
def sample_path() -> Path:
    """The 8 reference environments from the paper's test set."""
    return shared_path("ftrl", "test_sample.jsonl")


@pytest.fixture
def taubench_path() -> Path:
    """The tau-bench airline and retail domains with 20 tasks."""
    return shared_path("tau-bench")
