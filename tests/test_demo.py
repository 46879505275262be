"""`ftrl demo` end to end: every step runs on real components, writes its outputs, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.demo import DemoConfig, run_demo
from ftrl.jsonl import iter_jsonl
from ftrl.train.tiny import build_tiny_model


def _episodes(path: Path) -> list[str]:
    return [row["episode_id"] for _, row in iter_jsonl(path)]


def test_quick_demo_on_a_tiny_model_runs_every_step_and_resumes(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    config = DemoConfig.quick(out=str(tmp_path / "demo"), model=str(model))
    summaries = run_demo(config)
    out = Path(config.out)
    assert set(summaries) == {"base", "sft", "rl"}
    for label in summaries:
        assert summaries[label]["mean"]["n"] == config.test_envs
        assert len(_episodes(out / "eval" / label / "episodes.jsonl")) == config.test_envs
    test_domains = {row["domain_world"] for _, row in iter_jsonl(out / "envs" / "test.jsonl")}
    train_domains = {row["domain_world"] for _, row in iter_jsonl(out / "envs" / "train.jsonl")}
    assert not any(d in world for world in train_domains for d in config.held_out)
    assert all(any(d in world for d in config.held_out) for world in test_domains)
    assert (out / "rl" / "model" / "config.json").exists() and (out / "sft" / "model" / "config.json").exists()
    report = (out / "report" / "report.md").read_text()
    assert "| mean |" in report and (out / "report" / "report.png").stat().st_size > 0
    metrics = [row for _, row in iter_jsonl(out / "rl" / "metrics.jsonl")]
    assert len(metrics) == config.rl_steps

    before = {label: (out / "eval" / label / "episodes.jsonl").read_bytes() for label in summaries}
    (out / "eval" / "rl" / "summary.json").unlink()
    again = run_demo(config)  # everything done: the rerun only rewrites the summaries and the report
    assert json.dumps(again["rl"]["mean"]) == json.dumps(summaries["rl"]["mean"])
    assert {label: (out / "eval" / label / "episodes.jsonl").read_bytes() for label in summaries} == before


@pytest.mark.slow
def test_quick_demo_command_on_the_embedded_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "eval" / "rl" / "summary.json").read_text())
    assert summary["mean"]["n"] == DemoConfig.quick().test_envs
    assert (tmp_path / "demo" / "report" / "report.png").exists()
