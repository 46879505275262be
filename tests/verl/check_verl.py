"""Runs inside the verl 0.9.1 environment (started by tests/test_verl_real.py, which prepares `FTRL_VERL_CASE`):
ftrl's export checked with verl's own code only: the generated scripts' arguments composed with verl's hydra
config and `validate_config`, the reward function loaded by verl's loader and scored by verl's reward manager,
the dataset read by `RLHFDataset` and tokenized by verl's agent-loop prompt builder, and whole gold episodes
through verl's `ToolAgentLoop` with ftrl's tools. The one stand-in is the LLM server (`ReplayServer`), which
needs a GPU; it replays gold turns.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
import verl.trainer.main_ppo
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap
from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils import hf_tokenizer
from verl.utils.config import validate_config
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl.workers.rollout.replica import TokenOutput

from verl import DataProto

CASE = json.loads(Path(os.environ["FTRL_VERL_CASE"]).read_text())
EXPORTS = {export["name"]: export for export in CASE["exports"]}
CONFIG_DIR = str(Path(verl.trainer.main_ppo.__file__).parent / "config")
SCRIPTS = ("train_grpo.sh", "train_reinforce_plus_plus.sh", "train_multiturn_grpo.sh")


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
        results = await asyncio.gather(
            *(manager.run_single(response_batch(tokenizer, c["text"], row)) for row, c in cases)
        )
        return [r["reward_score"] for r in results]

    got = manager.loop.run_until_complete(score_all())  # the manager runs its executor calls on its own loop
    assert got == [c["reward"] for _, c in cases]
    # a gold turn solves each of its k calls: Solve-F1 2k/(k+1), exactly 1.0 for one call or the final answer
    gold = [export["responses"][i][0]["reward"] for i in range(len(data))]
    assert gold == [2 * k / (k + 1) if k else 1.0 for k in export["gold_calls"]]
    assert {c["reward"] for _, c in cases if c["text"] == ""} == {-0.5}


class ReplayServer:
    """Stands in for the LLM server only (vLLM needs a GPU): each `generate` answers with the episode's next gold
    turn and records the prompt tokens verl sent. Everything around it is verl's own `ToolAgentLoop`."""

    def __init__(self, tokenizer, texts: list[str]):
        self.replies = [
            tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for text in texts
        ]
        self.prompts: list[list[int]] = []

    async def generate(self, *, prompt_ids: list[int], **kwargs) -> TokenOutput:
        self.prompts.append(list(prompt_ids))
        return TokenOutput(token_ids=self.replies[len(self.prompts) - 1])


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_ftrl_agent_loop_plays_gold_episodes(name: str) -> None:
    """`FtrlAgentLoop`, instantiated from the exported `ftrl_agent_loop.yaml` as verl's agent-loop worker does,
    runs whole gold episodes through verl's `ToolAgentLoop.run` (prompt building, hermes parsing, tool calls,
    continuous-token merging): every tool output reaches the response, the episode scores ftrl's Solve-F1 under
    verl's reward manager, and with a tools template the prompt of every turn is `ftrl eval`'s, token for token."""
    export = EXPORTS[name]
    config = composed(export, "train_multiturn_grpo.sh")
    data, tokenizer = dataset(export, "episodes.parquet")
    manager = load_reward_manager(config, tokenizer)
    (agent_config,) = OmegaConf.load(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)

    async def play(row: dict, server: ReplayServer):
        loop = hydra.utils.instantiate(
            config=agent_config,
            trainer_config=DictConfigWrap(config),
            server_manager=server,
            tokenizer=tokenizer,
            processor=None,
            hf_model_type=export["model_type"],
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(config.data),
            tools=ToolListWrap([]),
        )
        output = await loop.run({}, **row)
        batch = DataProto.from_dict(
            tensors={
                "responses": torch.tensor([output.response_ids]),
                "attention_mask": torch.ones(1, len(output.response_ids), dtype=torch.long),
            },
            non_tensors={
                key: np.array([row[key]], dtype=object) for key in ("data_source", "reward_model", "extra_info")
            },
        )
        batch.non_tensor_batch["tool_extra_fields"] = np.array([output.extra_fields], dtype=object)
        return output, (await manager.run_single(batch))["reward_score"]

    for index, episode in enumerate(export["episodes"]):
        server = ReplayServer(tokenizer, [*episode["turns"], episode["answer"]])
        output, reward = manager.loop.run_until_complete(play(data[index], server))
        assert len(server.prompts) == len(episode["turns"]) + 1  # the loop ended after the gold answer
        assert server.prompts[0] == episode["contexts"][0]
        if name == "qwen25-style":
            assert server.prompts == episode["contexts"]
        text = tokenizer.decode(output.response_ids)
        assert all(out in text for outs in episode["outputs"] for out in outs)
        counts = output.extra_fields["ftrl"]
        assert counts["n_solved"] == counts["n_calls"] > 0 and len(counts["turn_rewards"]) == len(episode["turns"])
        # each (solving) turn's reward is the step reward of its first call, the others' 0
        assert sorted(r for r in output.extra_fields["tool_rewards"] if r) == sorted(counts["turn_rewards"])
        assert reward == pytest.approx(episode["solve_f1"]) and reward == 1.0
