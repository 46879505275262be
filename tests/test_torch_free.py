"""Commands that need no model work where torch is not installed: `ftrl validate`, `score` and `build` (procedural)
also without transformers, and `ftrl export verl`, which needs only a tokenizer, with transformers but no torch.

Each command runs in a subprocess whose `sys.modules` maps the missing packages to None, so importing them raises
ImportError exactly as if they were not installed; its output is compared with the same work done here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ftrl

SRC = Path(ftrl.__file__).resolve().parents[1]
#: Runs `ftrl ARGS...` with the comma-separated packages of argv[1] unimportable.
PRELUDE = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["ftrl", *sys.argv[2:]]
from ftrl.cli import app
app()
"""
NO_ML = ("torch", "transformers")


def ftrl_without(blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """`ftrl *args` in a fresh interpreter where `blocked` cannot be imported; tracebacks kept (FTRL_DEBUG)."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "FTRL_DEBUG": "1", "COLUMNS": "250"}
    command = [sys.executable, "-c", PRELUDE, ",".join(blocked), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_blocked_packages_really_cannot_be_imported(sample_path: Path, tmp_path: Path) -> None:
    """The prelude's premise: a command that needs torch fails in that interpreter."""
    result = ftrl_without(NO_ML, "train", "--data", str(sample_path), "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "import of torch halted" in result.stderr


def test_library_modules_import_without_torch() -> None:
    """The CLI and the export module load no torch or transformers at import, even where both are installed."""
    code = (
        "import sys, ftrl.cli, ftrl.export.verl, ftrl.formats.render, ftrl.rollout, ftrl.reward\n"
        "import ftrl.construction.driver\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_validate_without_torch_or_transformers(sample_path: Path) -> None:
    result = ftrl_without(NO_ML, "validate", str(sample_path))
    assert result.returncode == 0, result.stderr
    assert "8/8 rows valid" in result.stdout


def test_score_without_torch_or_transformers(sample_path: Path, tmp_path: Path) -> None:
    arguments = {
        "country": "France",
        "event_type": "motion_of_no_confidence",
        "time_period": "1962-2023",
        "figure": "Georges Pompidou",
    }
    call = "<tool_call>\n" + json.dumps({"name": "political_event_search", "arguments": arguments}) + "\n</tool_call>"
    responses = tmp_path / "responses.jsonl"
    items = [
        {"row": 0, "response": call},  # solves the one pending sub-question: 1.0
        {"row": 0, "response": ""},  # empty: -0.5
        {"row": 0, "response": "It was Michel Barnier."},  # the gold answer with one sub-question pending: 1/(1+1)
    ]
    responses.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = tmp_path / "scores.jsonl"
    result = ftrl_without(NO_ML, "score", str(sample_path), "--responses", str(responses), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["reward"] for row in rows] == [1.0, -0.5, 0.5]
    assert rows[0]["tool_calls"][0]["function"]["name"] == "political_event_search"


def test_procedural_build_without_torch_or_transformers(tmp_path: Path) -> None:
    from ftrl.construction.config import BuildConfig
    from ftrl.construction.driver import build_environments

    out = tmp_path / "envs.jsonl"
    result = ftrl_without(NO_ML, "build", "--n", "3", "--seed", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    here = tmp_path / "here.jsonl"
    build_environments(BuildConfig(n=3, seed=5), here)
    assert out.read_bytes() == here.read_bytes() and len(out.read_text().splitlines()) == 3


def test_export_verl_with_a_tokenizer_but_no_torch(sample_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")  # only to build the tiny model here
    pytest.importorskip("transformers")
    import pyarrow.parquet as pq

    from ftrl.export import export_verl
    from ftrl.train.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    out = tmp_path / "export"
    args = ["export", "verl", "--data", str(sample_path), "--out", str(out), "--model", str(model), "--multi-turn"]
    result = ftrl_without(("torch",), *args)
    assert result.returncode == 0, result.stderr
    here = tmp_path / "here"
    export_verl(sample_path, here, model=str(model), multi_turn=True)
    for table in ("train.parquet", "episodes.parquet"):
        exported = pq.read_table(out / table)
        assert exported.num_rows == 8 and exported.equals(pq.read_table(here / table))
    for name in ("ftrl_reward.py", "train_grpo.sh", "train_multiturn_grpo.sh"):
        assert (out / name).read_text() == (here / name).read_text()
