"""End-to-end: `ftrl eval --model embedded` on the paper's sample environments (loads the real model)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ftrl.cli import app


@pytest.mark.slow
def test_eval_embedded_on_the_shared_sample(sample_path, tmp_path):
    pytest.importorskip("torch")
    from ftrl.models import ModelNotFound, resolve_model

    try:
        resolve_model("embedded")
    except ModelNotFound as error:
        pytest.skip(str(error))
    out = tmp_path / "run"
    args = [
        "eval",
        "--model",
        "embedded",
        "--envs",
        str(sample_path),
        "--out",
        str(out),
        "--max-turns",
        "3",
        "--max-new-tokens",
        "96",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert sum(s["n"] for s in summary["scenarios"].values()) == 8 and len(summary["scenarios"]) == 4
    assert all(0.0 <= summary[key] <= 100.0 for key in ("solve_p", "solve_r", "solve_f1"))
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert all(row["messages"][1]["role"] == "assistant" and 1 <= row["turns"] <= 3 for row in rows)
