"""`ftrl demo` end to end: every step runs on real components, writes its outputs, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.jsonl import iter_jsonl
from ftrl.recipes.demo import DemoConfig, run_demo
from ftrl.train.tiny import build_tiny_model


def _episodes(path: Path) -> list[str]:
    return [row["episode_id"] for _, row in iter_jsonl(path)]


def test_quick_demo_on_a_tiny_model_runs_every_step_and_resumes(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    config = DemoConfig.quick(out=str(tmp_path / "demo"), model=str(model))
    summaries = run_demo(config)
    out = Path(config.out)
    folders = {"base": out / "round_0" / "eval", "sft": out / "warm_start" / "eval"}
    folders["rl"] = out / f"round_{config.rounds}" / "eval"
    assert set(summaries) == {"base", "sft", "rl"}
    for label in summaries:
        assert summaries[label]["mean"]["n"] == config.test_envs
        assert len(_episodes(folders[label] / "episodes.jsonl")) == config.test_envs
    test_domains = {row["domain_world"] for _, row in iter_jsonl(out / "envs" / "test.jsonl")}
    train_domains = {row["domain_world"] for _, row in iter_jsonl(out / "envs" / "train.jsonl")}
    assert not any(d in world for world in train_domains for d in config.held_out)
    assert all(any(d in world for d in config.held_out) for world in test_domains)
    assert (out / "warm_start" / "model" / "config.json").exists()
    sft_rows = [row for _, row in iter_jsonl(out / "envs" / "sft.jsonl")]
    train_rows = [row for _, row in iter_jsonl(out / "envs" / "train.jsonl")]
    assert sft_rows == train_rows[: config.warm_start_size]
    for k in range(1, config.rounds + 1):  # each round: states from its own fresh training envs, then training
        round_dir = out / f"round_{k}"
        assert (round_dir / "train" / "model" / "config.json").exists()
        assert len([row for _, row in iter_jsonl(round_dir / "train" / "metrics.jsonl")]) == config.train.steps
        first = config.warm_start_size + (k - 1) * config.envs_per_round
        indices = {row["index"] for _, row in iter_jsonl(round_dir / "states.jsonl")}
        assert indices <= set(range(config.envs_per_round)) and indices
        questions = {row["messages"][0]["content"] for _, row in iter_jsonl(round_dir / "envs.jsonl")}
        assert questions == {row["messages"][0]["content"] for row in train_rows[first : first + config.envs_per_round]}
        # only the last round is evaluated (the demo compares base, warm start and the final model)
        assert (round_dir / "eval").exists() == (k == config.rounds)
    train_config = json.loads((out / "round_2" / "train" / "config.json").read_text())
    assert train_config["model"].endswith("round_1/train/model") and train_config["seed"] == config.seed + 2
    assert train_config["lr"] == config.train.lr and train_config["n"] == config.train.n
    report = (out / "report" / "report.md").read_text()
    assert "| mean |" in report and (out / "report" / "report.png").stat().st_size > 0
    assert "rl - sft" in report and "Paired differences" in report
    differences = json.loads((out / "report" / "differences.json").read_text())
    assert [(d["a"], d["b"]) for d in differences] == [("base", "sft"), ("base", "rl"), ("sft", "rl")]
    assert all(d["low"] <= d["mean"] <= d["high"] and d["n"] == config.test_envs for d in differences)
    seconds = json.loads((out / "report" / "settings.json").read_text())["seconds"]
    assert {"build environments", "start", "warm start", "round 1", "round 2"} <= set(seconds)

    before = {label: (folders[label] / "episodes.jsonl").read_bytes() for label in summaries}
    (folders["rl"] / "summary.json").unlink()
    again = run_demo(config)  # everything done: the rerun only rewrites the missing summary and the report
    assert json.dumps(again["rl"]["mean"]) == json.dumps(summaries["rl"]["mean"])
    assert {label: (folders[label] / "episodes.jsonl").read_bytes() for label in summaries} == before


@pytest.mark.slow
def test_quick_demo_command_on_the_embedded_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "round_2" / "eval" / "summary.json").read_text())
    assert summary["mean"]["n"] == DemoConfig.quick().test_envs
    assert (tmp_path / "demo" / "report" / "report.png").exists()


def test_profiles_and_their_cli() -> None:
    default, long = DemoConfig.profile("default"), DemoConfig.profile("long")
    assert long.rounds * long.train.steps > default.rounds * default.train.steps
    assert DemoConfig.profile("quick").test_envs < default.test_envs
    # every round collects from its own fresh training environments, none of them used by SFT
    for config in (default, long):
        assert config.warm_start_size + config.rounds * config.envs_per_round <= config.train_envs
    with pytest.raises(ValueError, match="unknown demo profile"):
        DemoConfig.profile("huge")
    result = CliRunner().invoke(app, ["demo", "--profile", "huge"])
    assert result.exit_code != 0 and "unknown demo profile" in result.output
