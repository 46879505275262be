"""Runs inside the verl 0.9.1 environment (started by tests/test_verl_real.py, which prepares `FTRL_VERL_CASE`):
ftrl's export checked with verl's own code only: the generated scripts' arguments composed with verl's hydra
config and `validate_config`, the reward function loaded by verl's loader and scored by verl's reward manager,
the dataset read by `RLHFDataset` and tokenized by verl's agent-loop prompt builder, and whole gold episodes
through verl's `ToolAgentLoop` call path with ftrl's tools.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import verl.trainer.main_ppo
from verl import DataProto
from verl.experimental.agent_loop.tool_agent_loop import AgentData
from verl.experimental.agent_loop.tool_parser import ToolParser
from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils import hf_tokenizer
from verl.utils.config import validate_config
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

CASE = json.loads(Path(os.environ["FTRL_VERL_CASE"]).read_text())
EXPORTS = {export["name"]: export for export in CASE["exports"]}
CONFIG_DIR = str(Path(verl.trainer.main_ppo.__file__).parent / "config")
SCRIPTS = ("train_grpo.sh", "train_reinforce_pp.sh", "train_multiturn_grpo.sh")


def script_arguments(script: Path) -> list[str]:
    """The arguments the generated script passes to `python3 -m verl.trainer.main_ppo`, expanded by bash itself
    (a `python3` shell function prints them instead of starting a run)."""
    env = {**os.environ, "BASH_FUNC_python3%%": '() { printf "%s\\0" "$@"; }'}
    for name in ("MODEL", "N_GPUS", "VAL_FILES", "LOGGER"):
        env.pop(name, None)
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    arguments = out.split("\0")[:-1]
    assert arguments[:2] == ["-m", "verl.trainer.main_ppo"]
    return arguments[2:]


def composed(export: dict, script: str) -> OmegaConf:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose("ppo_trainer", overrides=script_arguments(Path(export["dir"]) / script))


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_compose_validate_and_load_ftrls_reward(script: str) -> None:
    export = EXPORTS["qwen25-style"]
    config = composed(export, script)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert not [a for a in script_arguments(Path(export["dir"]) / script) if a.startswith("+")]  # no unknown keys
    assert config.trainer.logger == ["console"]
    assert config.reward.reward_manager.name == "naive"
    assert config.reward.custom_reward_function.path == str(Path(export["dir"]) / "ftrl_reward.py")
    assert config.actor_rollout_ref.model.path == export["tokenizer"]
    assert config.actor_rollout_ref.actor.kl_loss_type == "low_var_kl" and config.actor_rollout_ref.rollout.n == 16
    assert config.algorithm.adv_estimator == ("reinforce_plus_plus" if "reinforce" in script else "grpo")
    reward_fn = get_custom_reward_fn(config)  # verl's own loader, from the keys main_ppo reads
    assert inspect.getsourcefile(reward_fn.args[0]) == config.reward.custom_reward_function.path
    if script == "train_multiturn_grpo.sh":
        assert config.data.train_files.endswith("episodes.parquet")
        agents = OmegaConf.load(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)
        assert [a.name for a in agents] == [config.actor_rollout_ref.rollout.agent.default_agent_loop]


def dataset(export: dict, name: str) -> tuple[RLHFDataset, object]:
    config = composed(export, "train_grpo.sh")
    tokenizer = hf_tokenizer(export["tokenizer"])
    return RLHFDataset([str(Path(export["dir"]) / name)], tokenizer, config.data), tokenizer


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_dataset_prompts_are_ftrl_trains(name: str) -> None:
    """verl's single-turn agent loop renders `raw_prompt` with no tools; the tokens must be `ftrl train`'s."""
    export = EXPORTS[name]
    data, tokenizer = dataset(export, "train.parquet")
    builder = create_continuous_token_builder(tokenizer, hf_model_type=export["model_type"])
    assert len(data) == len(export["prompt_ids"])
    for index in range(len(data)):
        assert builder.build_initial_tokens(data[index]["raw_prompt"]) == export["prompt_ids"][index], index


def response_batch(tokenizer, text: str, row: dict) -> DataProto:
    """One generated response as verl's reward manager receives it (prompt omitted: it reads the responses)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    responses = torch.tensor([ids])
    return DataProto.from_dict(
        tensors={"responses": responses, "attention_mask": torch.ones_like(responses)},
        non_tensors={key: np.array([row[key]], dtype=object) for key in ("data_source", "reward_model", "extra_info")},
    )


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_reward_manager_scores_like_ftrl_score(name: str) -> None:
    """verl's naive reward manager with ftrl's reward function: gold next turns, junk, empty and malformed turns
    score exactly as `ftrl score` scores them, all rows concurrently."""
    export = EXPORTS[name]
    config = composed(export, "train_grpo.sh")
    data, tokenizer = dataset(export, "train.parquet")
    manager = load_reward_manager(config, tokenizer)
    cases = [(data[i], case) for i in range(len(data)) for case in export["responses"][i]]

    async def score_all() -> list[float]:
        results = await asyncio.gather(*(manager.run_single(response_batch(tokenizer, c["text"], row)) for row, c in cases))
        return [r["reward_score"] for r in results]

    got = manager.loop.run_until_complete(score_all())  # the manager runs its executor calls on its own loop
    assert got == [c["reward"] for _, c in cases]
    # a gold turn solves each of its k calls: Solve-F1 2k/(k+1), exactly 1.0 for one call or the final answer
    gold = [export["responses"][i][0]["reward"] for i in range(len(data))]
    assert gold == [2 * k / (k + 1) if k else 1.0 for k in export["gold_calls"]]
    assert {c["reward"] for _, c in cases if c["text"] == ""} == {-0.5}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_gold_episodes_through_verls_tool_loop(name: str) -> None:
    """Episode starts render as ftrl renders them; each gold turn goes through verl's hermes parser and
    `ToolAgentLoop._call_tool` (create / execute / release) with `FtrlAgentLoop`'s tools; outputs equal ftrl's
    runtime, and verl's reward manager gives the episode ftrl's Solve-F1."""
    from ftrl.export.verl_tool import FtrlAgentLoop, episode_tools

    export = EXPORTS[name]
    config = composed(export, "train_multiturn_grpo.sh")
    data, tokenizer = dataset(export, "episodes.parquet")
    builder = create_continuous_token_builder(tokenizer, hf_model_type=export["model_type"])
    manager = load_reward_manager(config, tokenizer)
    assert len(data) == len(export["episodes"])

    async def play(row: dict, episode: dict) -> tuple[list[list[str]], float, list[float]]:
        loop = FtrlAgentLoop.__new__(FtrlAgentLoop)  # the LLM server side of __init__ needs GPUs
        tools = episode_tools(row["extra_info"])
        loop.tools = {tool.name: tool for tool in tools}
        loop.max_parallel_calls = config.actor_rollout_ref.rollout.multi_turn.max_parallel_calls
        loop.max_tool_response_length = config.actor_rollout_ref.rollout.multi_turn.max_tool_response_length
        loop.tool_response_truncate_side = "middle"
        parser = ToolParser.get_tool_parser(config.actor_rollout_ref.rollout.multi_turn.format, tokenizer)
        prompt = builder.build_initial_tokens(row["raw_prompt"], tools=[t.tool_schema.model_dump() for t in tools])
        assert prompt == episode["prompt_ids"]
        agent = AgentData(list(row["raw_prompt"]), None, None, None, None, {}, "request-1", {})
        outputs, step_rewards = [], []
        for text in episode["turns"]:
            ids = tokenizer(text, add_special_tokens=False).input_ids
            content, agent.tool_calls = await parser.extract_tool_calls(ids, [t.tool_schema for t in tools])
            agent.assistant_turns += 1
            agent.messages.append(loop._build_assistant_message(content, agent))
            results = await asyncio.gather(*(loop._call_tool(call, {}, agent) for call in agent.tool_calls))
            outputs.append([response.text for response, _, _ in results])
            step_rewards += [reward for _, reward, _ in results]
        batch = response_batch(tokenizer, "The answer is.", row)
        batch.non_tensor_batch["tool_extra_fields"] = np.array([agent.extra_fields], dtype=object)
        return outputs, (await manager.run_single(batch))["reward_score"], step_rewards

    for index, episode in enumerate(export["episodes"]):
        outputs, reward, step_rewards = manager.loop.run_until_complete(play(data[index], episode))
        assert outputs == episode["outputs"]
        assert reward == pytest.approx(episode["solve_f1"]) and reward == 1.0
        assert sum(step_rewards) > 0 and all(r >= 0 for r in step_rewards)
