"""`ftrl loop` (`ftrl.recipes.loop`): rounds of collect -> train -> evaluate, resumable at round granularity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftrl.env import Environment, write_envs
from ftrl.recipes.loop import LoopConfig, run_loop
from ftrl.train.config import SFTConfig, make_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftrl.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_loop_resumes_after_a_crash_in_round_two(tiny: Path, tmp_path: Path) -> None:
    source = tmp_path / "states.jsonl"
    env = Environment([{"role": "user", "content": "Hi?"}], [], {}, {}, solve_rate=1.0, answer="hi", split="train")
    write_envs(source, [env, env])
    collected: list[str] = []

    def collect(model: str, envs: str, out: Path, round_number: int) -> None:
        collected.append(model)
        shutil.copy(source, out)

    def evaluate(model: str, envs: str, out: Path) -> dict[str, float]:
        round_number = len(evaluated)
        evaluated.append(model)
        if crash and round_number == 2:
            raise RuntimeError("killed")
        return {"solve_p": 0.5, "solve_r": 0.1 * round_number, "solve_f1": 0.2 * round_number}

    config = LoopConfig(
        model=str(tiny),
        envs="train",
        eval_envs="test",
        out=str(tmp_path / "loop"),
        rounds=2,
        train=make_config("cpu", steps=1),
    )
    evaluated: list[str] = []
    crash = True
    with pytest.raises(RuntimeError, match="killed"):
        run_loop(config, collect, evaluate)
    state = json.loads((tmp_path / "loop" / "loop_state.json").read_text())
    assert [row["round"] for row in state["rounds"]] == [0, 1]
    crash = False
    rounds = run_loop(config, collect, evaluate)
    assert [row["round"] for row in rounds] == [0, 1, 2]
    # round 2 collected once (its states file is reused on resume) and from round 1's trained model
    assert collected == [str(tiny), rounds[1]["model"]]
    assert rounds[2]["model"].endswith("round_2/train/model") and Path(rounds[2]["model"], "config.json").exists()
    assert rounds[2]["solve_f1"] == pytest.approx(0.2 * 3)  # evaluations: start, round 1, crashed, round 2
    assert (tmp_path / "loop" / "loop.png").stat().st_size > 0


def test_loop_runs_with_the_real_collection_and_evaluation(tiny: Path, tmp_path: Path) -> None:
    from ftrl.construction.config import BuildConfig, Difficulty
    from ftrl.construction.driver import build_environments

    small = Difficulty(
        min_hops=2, max_hops=2, min_chain_hops=1, max_chain_hops=1, min_params=2, max_params=2, min_tools=2, max_tools=2
    )
    build_environments(BuildConfig(n=4, seed=5, difficulty=small), tmp_path / "train.jsonl")
    build_environments(BuildConfig(n=4, seed=6, split="test", difficulty=small), tmp_path / "test.jsonl")
    config = LoopConfig(
        model=str(tiny),
        envs=str(tmp_path / "train.jsonl"),
        eval_envs=str(tmp_path / "test.jsonl"),
        out=str(tmp_path / "loop"),
        rounds=1,
        train=make_config("cpu", steps=1),
    )
    rounds = run_loop(config)
    assert [row["round"] for row in rounds] == [0, 1]
    assert (tmp_path / "loop" / "round_1" / "eval" / "summary.json").exists()
    assert (tmp_path / "loop" / "loop.png").exists()
    assert all(0.0 <= row["solve_f1"] <= 100.0 for row in rounds)


def test_warm_start_runs_once_is_reported_apart_and_seeds_round_one(tiny: Path, tmp_path: Path) -> None:
    source = tmp_path / "states.jsonl"
    env = Environment([{"role": "user", "content": "Hi?"}], [], {}, {}, solve_rate=1.0, answer="hi", split="train")
    write_envs(source, [env, env])
    collected: list[str] = []
    warm: list[str] = []

    def collect(model: str, envs: str, out: Path, round_number: int) -> None:
        collected.append(model)
        shutil.copy(source, out)

    def warm_start(model: str, out: Path) -> str:
        warm.append(model)
        shutil.copytree(tiny, out / "model")
        return str(out / "model")

    scores = iter([0.0, 30.0, 99.0, 40.0])

    def evaluate(model: str, envs: str, out: Path) -> dict[str, float]:
        value = next(scores)
        if value == 99.0:
            raise RuntimeError("killed during round 1")
        return {"solve_p": value, "solve_r": value, "solve_f1": value}

    config = LoopConfig(
        model=str(tiny),
        envs="train",
        eval_envs="test",
        out=str(tmp_path / "loop"),
        rounds=1,
        train=make_config("cpu", steps=1),
        warm_start=SFTConfig(envs="gold.jsonl"),
    )
    with pytest.raises(RuntimeError, match="killed"):
        run_loop(config, collect, evaluate, warm_start=warm_start)
    rows = run_loop(config, collect, evaluate, warm_start=warm_start)
    assert [row["label"] for row in rows] == ["start", "warm start", "round 1"]
    assert [row["solve_f1"] for row in rows] == [0.0, 30.0, 40.0]
    assert warm == [str(tiny)]  # not repeated on resume
    assert collected == [str(tmp_path / "loop" / "warm_start" / "model")]  # round 1 starts from the warm start
    assert rows[2]["model"].endswith("round_1/train/model")


def test_warm_start_with_real_sft_skips_a_finished_model(tiny: Path, tmp_path: Path) -> None:
    from ftrl.construction.config import BuildConfig, Difficulty
    from ftrl.construction.driver import build_environments

    small = Difficulty(
        min_hops=2, max_hops=2, min_chain_hops=1, max_chain_hops=1, min_params=2, max_params=2, min_tools=2, max_tools=2
    )
    build_environments(BuildConfig(n=2, seed=5, difficulty=small), tmp_path / "gold.jsonl")
    config = LoopConfig(model=str(tiny), warm_start=SFTConfig(envs=str(tmp_path / "gold.jsonl")))
    model = Path(config.run_warm_start(str(tiny), tmp_path / "warm"))
    assert (model / "config.json").exists()
    assert json.loads((tmp_path / "warm" / "config.json").read_text())["envs"] == str(tmp_path / "gold.jsonl")
    before = (model / "model.safetensors").stat().st_mtime_ns
    assert config.run_warm_start(str(tiny), tmp_path / "warm") == str(model)
    assert (model / "model.safetensors").stat().st_mtime_ns == before


def test_rounds_table_and_plot_show_n_a_for_precision_without_calls(tmp_path) -> None:
    from rich.console import Console

    from ftrl.recipes.loop import plot_rounds, rounds_table

    rows = [
        {"round": 0, "label": "start", "model": "base", "solve_p": 100.0, "solve_r": 0.0, "solve_f1": 0.0, "calls": 0},
        {"round": 1, "label": "round 1", "model": "m1", "solve_p": 40.0, "solve_r": 30.0, "solve_f1": 33.0, "calls": 9},
    ]
    console = Console(width=80, record=True)
    console.print(rounds_table(rows))
    text = console.export_text()
    assert "n/a" in text and "100.0" not in text and "40.0" in text
    assert plot_rounds(rows, tmp_path / "loop.png").stat().st_size > 1000
