"""`ftrl sft`: gold trajectories rendered as the policy writes them, loss on assistant tokens only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.env import gold_turns, read_envs, tool_name, write_envs
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.train.sft import IGNORE, SFTConfig, gold_trajectory, sft, tokenize_trajectory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftrl.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def procedural(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftrl.construction.config import BuildConfig
    from ftrl.construction.driver import build_environments

    path = tmp_path_factory.mktemp("envs") / "train.jsonl"
    build_environments(BuildConfig(n=4, seed=1), path)
    envs = read_envs(path)
    for env in envs:  # keep only the needed tools: shorter prompts for the byte-level tiny tokenizer
        env.tools = [tool for tool in env.tools if tool_name(tool) in env.unsolved_set]
        env.codes = {name: code for name, code in env.codes.items() if name in env.unsolved_set}
    write_envs(path, envs)
    return path


def test_waves_follow_dependencies(procedural: Path) -> None:
    envs = {env.scenario: env for env in read_envs(procedural)}
    assert [len(w) for w in gold_turns(envs["single_hop"], parallel=True)] == [1]
    assert [len(w) for w in gold_turns(envs["parallel_single_hop"], parallel=True)] == [2]  # independent: one turn
    multi = envs["multi_hop"]
    assert [len(w) for w in gold_turns(multi, parallel=True)] == [1] * len(
        multi.gold_calls
    )  # a chain: one call per turn


def test_gold_trajectory_solves_everything_and_labels_only_assistant_text(procedural: Path, tiny: Path) -> None:
    from transformers import AutoTokenizer

    from ftrl.reward.solve import pending_count, solve_calls

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    env = next(e for e in read_envs(procedural) if e.scenario == "parallel_single_hop")
    with ToolRuntime(RuntimeConfig()) as runtime:
        trajectory = gold_trajectory(env, runtime)
    calls = trajectory[0]["tool_calls"]
    outputs = [m["content"] for m in trajectory if m["role"] == "tool"]
    remaining, _ = solve_calls(calls, outputs, env.unsolved_set)
    assert pending_count(remaining) == 0  # the gold calls' real outputs contain every gold sub-answer
    assert trajectory[-1] == {"role": "assistant", "content": env.answer}
    ids, labels = tokenize_trajectory(tokenizer, env, trajectory)
    assert len(ids) == len(labels)
    learned = tokenizer.decode([token for token, label in zip(ids, labels, strict=True) if label != IGNORE])
    # two assistant turns are learned: the hermes calls and the final answer, each closed by <|im_end|>\n
    assert learned.count("<tool_call>") == 2 and learned.endswith(env.answer + "<|im_end|>\n")
    assert outputs[0] not in learned and outputs[0] in tokenizer.decode(ids)  # tool outputs are context only


def test_sft_lowers_the_loss_and_saves_a_loadable_model(procedural: Path, tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    config = SFTConfig(
        model=str(tiny),
        envs=str(procedural),
        out=str(tmp_path / "sft"),
        epochs=3,
        lr=1e-2,
        batch_size=2,
        max_tokens=8000,
    )
    saved = sft(config)
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 2  # 4 trajectories, 2 per step, 3 epochs
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert AutoModelForCausalLM.from_pretrained(saved).config.num_hidden_layers == 2


def test_assistant_loss_equals_the_models_own_labelled_loss(procedural: Path, tiny: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftrl.train.sft import assistant_loss

    model = AutoModelForCausalLM.from_pretrained(tiny)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    env = read_envs(procedural)[0]
    with ToolRuntime(RuntimeConfig()) as runtime:
        ids, labels = tokenize_trajectory(tokenizer, env, gold_trajectory(env, runtime))
    assert 0 < sum(label != IGNORE for label in labels) < len(labels)
    expected = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    ours = assistant_loss(model, ids, labels)
    assert torch.allclose(ours, expected, atol=1e-5)
    ours.backward()
    assert model.lm_head.weight.grad is not None


def test_frozen_bottom_layers_keep_their_weights_and_the_rest_trains(
    procedural: Path, tiny: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config = SFTConfig(
        model=str(tiny),
        envs=str(procedural),
        out=str(tmp_path / "sft"),
        epochs=1,
        lr=1e-2,
        batch_size=2,
        max_tokens=8000,
        freeze_layers=1,
    )
    before = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    after = AutoModelForCausalLM.from_pretrained(sft(config)).state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert not any(name.startswith(("model.layers.0.", "model.embed_tokens")) for name in changed)
    assert any(name.startswith("model.layers.1.") for name in changed)
    with pytest.raises(ValueError, match="has 2 decoder layers"):
        sft(SFTConfig(model=str(tiny), envs=str(procedural), out=str(tmp_path / "bad"), freeze_layers=3))
