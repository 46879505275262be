"""`ftrl loop`: rounds of collect -> train -> evaluate, resumable at round granularity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftrl.env import Environment, write_envs
from ftrl.train.loop import LoopConfig, run_loop


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftrl.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_loop_resumes_after_a_crash_in_round_two(tiny: Path, tmp_path: Path) -> None:
    source = tmp_path / "states.jsonl"
    env = Environment([{"role": "user", "content": "Hi?"}], [], {}, {}, answer="hi", split="train")
    write_envs(source, [env, env])
    collected: list[str] = []

    def collect(model: str, envs: str, out: Path) -> None:
        collected.append(model)
        shutil.copy(source, out)

    def evaluate(model: str, envs: str, out: Path) -> dict[str, float]:
        round_number = len(evaluated)
        evaluated.append(model)
        if crash and round_number == 2:
            raise RuntimeError("killed")
        return {"solve_p": 0.5, "solve_r": 0.1 * round_number, "solve_f1": 0.2 * round_number}

    config = LoopConfig(model=str(tiny), envs="train", eval_envs="test", out=str(tmp_path / "loop"), rounds=2, steps=1)
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
