"""The curriculum (`ftrl.recipes.curriculum`): probe, filter by pass rate, and the difficulty controller."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.env import Environment, read_envs, write_envs
from ftrl.recipes.curriculum import (
    CurriculumConfig,
    difficulty_at,
    histogram,
    next_level,
    parse_band,
    probe_and_filter,
    probe_file,
)
from ftrl.recipes.loop import LoopConfig, run_loop, updated_levels

SMALL = Difficulty(
    min_hops=2, max_hops=3, min_chain_hops=1, max_chain_hops=2, min_params=2, max_params=3, min_tools=2, max_tools=3
)


def _state(scenario: str, question: str, solve_rate: float = 0.0) -> Environment:
    return Environment(
        [{"role": "user", "content": question}],
        [{"type": "function", "function": {"name": "tool", "description": "t", "parameters": {"type": "object"}}}],
        {"tool": "def tool():\n    return 'x'\n"},
        {"tool": ["x"]},
        solve_rate=solve_rate,
        data_source=f"self/{scenario}",
        split="train",
    )


def test_band_parsing_rejects_what_is_not_a_band() -> None:
    assert parse_band("0.2:0.8") == (0.2, 0.8)
    for bad in ("0.8:0.2", "0.2", "a:b", "-0.1:0.5", "0.5:1.5"):
        with pytest.raises(ValueError, match="target solve rate"):
            parse_band(bad)
    with pytest.raises(ValueError, match="probe_n"):
        CurriculumConfig(probe_n=1)


def test_levels_move_every_size_knob_and_level_zero_is_the_base() -> None:
    assert difficulty_at(SMALL, 0) == SMALL
    easier, harder = difficulty_at(SMALL, -1), difficulty_at(SMALL, 2)
    for low, high in (("min_hops", "max_hops"), ("min_params", "max_params"), ("min_tools", "max_tools")):
        assert getattr(easier, high) <= getattr(SMALL, high) < getattr(harder, high)
        assert getattr(harder, low) > getattr(SMALL, low)
    assert harder.min_distractors > SMALL.min_distractors
    floor = difficulty_at(SMALL, -10)  # clamped: still a valid build config (hops of a chain at least 2)
    assert floor.min_hops == 2 and floor.min_params == 1 and floor.min_tools == 1


def test_the_controller_converges_to_the_band_for_a_fake_policy() -> None:
    """A fake learner with a known pass rate per scenario and level; from any start, the controller must reach a
    level inside the band within a few rounds and stay there."""
    curves = {  # pass rate at level -2 .. 3 (harder levels: lower pass rates)
        "single_hop": [1.0, 1.0, 0.95, 0.9, 0.6, 0.3],
        "multi_hop": [0.7, 0.4, 0.1, 0.05, 0.0, 0.0],
        "parallel_single_hop": [0.9, 0.85, 0.5, 0.2, 0.1, 0.0],
    }
    config = CurriculumConfig(curriculum=True, target_solve_rate="0.2:0.8", min_level=-2, max_level=3)
    base = BuildConfig(scenarios=tuple(curves), difficulty=SMALL)
    for start in (-2, 0, 3):
        levels = dict.fromkeys(curves, start)
        history = []
        for _ in range(8):
            rates = {scenario: curves[scenario][levels[scenario] + 2] for scenario in curves}
            history.append(rates)
            levels = updated_levels(config, levels, base, rates)
        assert all(0.2 <= rate <= 0.8 for rate in history[-1].values()), (start, history)
        assert history[-1] == history[-2] == history[-3]  # it stays once inside
        assert levels["single_hop"] >= 2 and levels["multi_hop"] <= -1  # where the curves enter the band


def test_next_level_steps_toward_the_band_and_respects_its_limits() -> None:
    band = (0.2, 0.8)
    assert next_level(0, 0.95, band, -2, 3) == 1  # too easy: harder
    assert next_level(0, 0.05, band, -2, 3) == -1  # too hard: easier
    assert next_level(0, 0.5, band, -2, 3) == 0
    assert next_level(3, 1.0, band, -2, 3) == 3 and next_level(-2, 0.0, band, -2, 3) == -2


def test_probe_and_filter_keep_exactly_the_states_in_the_band() -> None:
    states = [_state("single_hop", f"q{i}", solve_rate=0.5) for i in range(6)]
    rates = [0.0, 0.2, 0.5, 0.8, 1.0, 0.75]
    result = probe_and_filter(states, lambda envs: rates[: len(envs)], (0.2, 0.8), n=4)
    assert [env.messages[0]["content"] for env in result.kept] == ["q1", "q2", "q3", "q5"]
    assert [env.extra["pass_rate"] for env in result.states] == rates and result.states[0].extra["probe_n"] == 4
    assert all(env.solve_rate == 0.5 for env in result.states)  # the reward's solve_rate is not the pass rate
    report = result.report()
    assert report["histogram"] == {"0.0-0.2": 1, "0.2-0.4": 1, "0.4-0.6": 1, "0.6-0.8": 1, "0.8-1.0": 2}
    assert report["kept"] == 4 and report["pass_rate_by_scenario"] == {"single_hop": round(sum(rates) / 6, 3)}
    with pytest.raises(ValueError, match="returned 1 pass rates for 6 states"):
        probe_and_filter(states, lambda envs: [0.5], (0.2, 0.8), n=4)


def test_probe_file_works_on_any_rows_and_writes_pass_rate(tmp_path: Path) -> None:
    source = tmp_path / "built.jsonl"
    write_envs(source, [_state("multi_hop", "easy"), _state("multi_hop", "hard"), _state("multi_hop", "right")])
    by_question = {"easy": 1.0, "hard": 0.0, "right": 0.5}
    result = probe_file(
        source,
        tmp_path / "kept.jsonl",
        lambda envs: [by_question[env.messages[0]["content"]] for env in envs],
        (0.2, 0.8),
        n=4,
    )
    assert result.report()["kept"] == 1
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [row["messages"][0]["content"] for row in kept] == ["right"] and kept[0]["pass_rate"] == 0.5
    assert [env.extra["pass_rate"] for env in read_envs(tmp_path / "kept.jsonl.probe.jsonl")] == [1.0, 0.0, 0.5]


def test_histogram_puts_one_in_the_last_bin() -> None:
    assert histogram([0.0, 0.19, 0.2, 1.0, 0.99]) == {
        "0.0-0.2": 2,
        "0.2-0.4": 1,
        "0.4-0.6": 0,
        "0.6-0.8": 0,
        "0.8-1.0": 2,
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftrl.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_the_loop_builds_probes_filters_and_moves_knobs_per_scenario(tiny: Path, tmp_path: Path) -> None:
    """Two rounds with real builds and training on the tiny model; the probe is a fake learner: single-hop
    states are always solved, multi-hop never, the rest half the time. Round 2 must build single-hop harder and
    multi-hop easier, and train only on the in-band states."""
    from ftrl.train.config import make_config

    rates = {"single_hop": 1.0, "multi_hop": 0.0, "parallel_single_hop": 0.5, "parallel_multi_hop": 0.5}
    base = BuildConfig(seed=3, difficulty=SMALL)
    probed: list[str] = []

    def pass_rates(model: str, round_number: int):  # noqa: ANN202 - the PassRates factory
        probed.append(model)
        return lambda states: [rates[state.scenario] for state in states]

    def collect(model: str, envs: str, out: Path, round_number: int) -> None:
        shutil.copy(envs, out)  # each environment is its own first state

    def evaluate(model: str, envs: str, out: Path) -> dict[str, float]:
        return {"solve_p": 0.0, "solve_r": 0.0, "solve_f1": 0.0}

    config = LoopConfig(
        model=str(tiny),
        envs="unused",
        eval_envs="unused",
        out=str(tmp_path / "loop"),
        rounds=2,
        train=make_config("cpu", steps=1, n=2, max_prompt_tokens=65536),
        curriculum=CurriculumConfig(curriculum=True, envs_per_scenario=2, probe_n=4),
    )
    rows = run_loop(config, collect, evaluate, pass_rates=pass_rates, build=base)
    first, second = rows[1], rows[2]
    assert first["levels"] == {} and first["levels_next"]["single_hop"] == 1 and first["levels_next"]["multi_hop"] == -1
    assert second["levels"] == first["levels_next"]
    assert second["knobs"]["single_hop"]["tools"] != first["knobs"]["single_hop"]["tools"]
    assert first["probe"]["probed"] == 8 and first["probe"]["kept"] == 4
    assert first["probe"]["histogram"]["0.4-0.6"] == 4
    trained = read_envs(tmp_path / "loop" / "round_1" / "train_states.jsonl")
    assert {env.scenario for env in trained} == {"parallel_single_hop", "parallel_multi_hop"}
    built = read_envs(tmp_path / "loop" / "round_2" / "envs.jsonl")
    single = [env for env in built if env.scenario == "single_hop"]
    assert min(len(env.tools) for env in single) >= difficulty_at(SMALL, 1).min_tools
    assert probed == [str(tiny), first["model"]]  # each round is probed with the policy it trains
    state = json.loads((tmp_path / "loop" / "loop_state.json").read_text())
    assert state["levels"] == second["levels_next"]
    again = run_loop(replace(config, rounds=2), collect, evaluate, pass_rates=pass_rates, build=base)
    assert again == rows and len(probed) == 2  # resumed: nothing probed or built twice


def test_build_with_probe_model_keeps_the_band_with_a_real_probe(tiny: Path, tmp_path: Path) -> None:
    """`ftrl build --probe-model`: the real probe (the tiny model sampled and scored as training does)."""
    from typer.testing import CliRunner

    from ftrl.cli import app

    out = tmp_path / "envs.jsonl"
    args = ["build", "--n", "4", "--seed", "2", "--out", str(out), "--min-tools", "2", "--max-tools", "2"]
    args += ["--min-params", "2", "--max-params", "2", "--min-hops", "2", "--max-hops", "2"]
    result = CliRunner().invoke(
        app, [*args, "--probe-model", str(tiny), "--target-solve-rate", "0:0.5", "--probe-n", "2"]
    )
    assert result.exit_code == 0, result.output
    probed = read_envs(tmp_path / "envs.probed.jsonl.probe.jsonl")
    assert len(probed) == 4 and all(env.extra["pass_rate"] in (0.0, 0.5, 1.0) for env in probed)
    kept = read_envs(tmp_path / "envs.probed.jsonl")
    assert [env.messages for env in kept] == [env.messages for env in probed if env.extra["pass_rate"] <= 0.5]
    assert "probed 4 environments" in result.output
    bad = CliRunner().invoke(app, [*args, "--probe-model", str(tiny), "--target-solve-rate", "0.9:0.1"])
    assert bad.exit_code != 0 and "LOW <= HIGH" in bad.output
