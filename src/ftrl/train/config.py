"""Training configurations as dataclasses: `TrainConfig` (RL) with the paper's verl settings and a small-CPU
preset, and `SFTConfig` (the warm start). They import no torch, so the command line derives its flags from them
(`ftrl.cli_config`) without loading it.

`paper` restates `Scripts/FTRL-{GRPO,Reinforce++}-Qwen25.sh` plus the defaults of the reference's
`ppo_trainer.yaml` (values marked *yaml* are not in the scripts). `cpu` keeps the same objective but sizes
everything for a 135M model on two CPU cores (about a minute per step). See docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ftrl.settings import SamplingConfig

#: The advantage estimators of `ftrl.train.algos`, by verl's names.
ALGOS = ("grpo", "reinforce_pp", "reinforce_pp_baseline")
#: Engines the trainer samples with (`ftrl.rollout.hf.ENGINES` minus hf and auto: it needs kvgen's per-token
#: log-probs).
TRAIN_ENGINES = ("kvgen", "int8")
LOSS_MODES = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum")


@dataclass(kw_only=True)
class TrainConfig:
    """Every knob of `ftrl train`; defaults are the paper's (verl) values. The `#:` comments are the flags' help
    (`ftrl.cli_config`); the verl key each field restates is in parentheses, *yaml* where only verl's yaml has it."""

    #: `embedded`, a local HF model directory or a cached hub id.
    model: str = "embedded"
    #: Trajectory states (JSONL/Parquet) written by `ftrl sample`.
    data: str = ""
    #: Run directory: metrics.jsonl, checkpoints/, model/.
    out: str = "runs/train"
    #: grpo | reinforce_pp | reinforce_pp_baseline (verl definitions).
    algo: str = "grpo"
    #: Per-turn reward: f1 (Solve-F1, the paper's default), p, r or pr.
    reward: str = "f1"
    #: Sub-answer matcher: reference (exact reproduction) or strict.
    matcher: str = "reference"
    #: Tool-call format the policy writes: hermes or llama31.
    fmt: str = "hermes"
    # rollout
    #: Responses sampled per state (rollout.n).
    n: int = 16
    #: Sampling temperature of the responses (rollout.temperature, *yaml*).
    temperature: float = 0.7
    #: Nucleus sampling threshold (rollout.top_p, *yaml*); top-k is off (-1 in verl).
    top_p: float = 1.0
    #: Longest response in tokens (data.max_response_length).
    max_new_tokens: int = 1024
    #: Sampling engine: kvgen (the trained fp32 weights) or int8 (kvgen over an int8 per-channel copy,
    #: re-quantized after every optimizer step; faster on a CPU, log-prob mismatch logged as logprob_mismatch).
    engine: str = "kvgen"
    #: States with longer prompts are skipped (data.max_prompt_length, filter_overlong_prompts).
    max_prompt_tokens: int = 16384
    # batch sizes, in states (verl counts prompts): each step samples `batch_states * n` responses
    #: States per step (data.train_batch_size).
    batch_states: int = 512
    #: States per optimizer update (actor.ppo_mini_batch_size): batch_states / mini_batch_states updates a step.
    #: Follows --batch-states when only that is given.
    mini_batch_states: int = 32
    #: Responses per forward/backward pass (memory only; gradients are accumulated).
    micro_batch_size: int = 8
    #: Dynamic sampling (DAPO; verl algorithm.filter_groups, off in the paper): sample --gen-batch-states states
    #: a step and train on the first --batch-states whose responses' rewards differ (equal ones give GRPO nothing).
    filter_groups: bool = False
    #: States sampled per step with --filter-groups (data.gen_batch_size; 0: --batch-states).
    gen_batch_states: int = 0
    #: With --filter-groups, pick first the groups where some response earned a positive reward; groups whose
    #: rewards differ only between 0 and the format penalties come after them (not in verl or the paper).
    prefer_solved: bool = False
    #: Passes over each step's responses (actor.ppo_epochs, *yaml*).
    ppo_epochs: int = 1
    # objective
    #: Learning rate, constant (actor.optim.lr; warmup_style constant, *yaml*).
    lr: float = 1e-6
    #: AdamW weight decay (*yaml*).
    weight_decay: float = 0.01
    #: Gradient norm clip (actor.grad_clip, *yaml*).
    grad_clip: float = 1.0
    #: PPO ratio clip (actor.clip_ratio, *yaml*).
    clip_ratio: float = 0.2
    #: Dual-clip lower bound for negative advantages (actor.clip_ratio_c, *yaml*).
    clip_ratio_c: float = 3.0
    #: Weight of the k3 KL loss to the starting policy (actor.kl_loss_coef; 0: no reference model, no reference
    #: pass).
    kl_coef: float = 0.001
    #: KL estimator (actor.kl_loss_type); only low_var_kl (k3) is implemented.
    kl_type: str = "low_var_kl"
    #: Weight of the entropy bonus (actor.entropy_coeff).
    entropy_coef: float = 0.001
    #: Loss aggregation: seq-mean-token-mean, token-mean or seq-mean-token-sum (actor.loss_agg_mode, *yaml*).
    loss_agg_mode: str = "seq-mean-token-mean"
    #: Discount of REINFORCE++ returns (algorithm.gamma).
    gamma: float = 1.0
    # model
    #: Train a LoRA adapter (merged into the saved model).
    lora: bool = False
    #: LoRA rank.
    lora_r: int = 16
    #: LoRA alpha.
    lora_alpha: int = 32
    #: Recompute activations in the backward pass to save memory (model.enable_gradient_checkpointing).
    gradient_checkpointing: bool = True
    #: Keep the embeddings and the lowest K decoder layers frozen (no backward pass below layer K: a cheaper step
    #: on a CPU). Not in the paper, which trains every weight.
    freeze_layers: int = 0
    #: Local models: auto (CUDA when present), cpu or cuda (`ftrl.rollout.models.placement`).
    device: str = "auto"
    #: auto (fp32 weights: bf16 would round lr-1e-6 updates away), fp32, bf16 or fp16.
    dtype: str = "auto"
    # run
    #: Optimizer steps (0: one pass over the data, trainer.total_epochs=1).
    steps: int = 0
    #: Checkpoint every this many steps (trainer.save_freq).
    save_every: int = 120
    #: Checkpoints kept on disk (the newest).
    keep_checkpoints: int = 2
    #: Seed for data order and sampling.
    seed: int = 0
    #: Seconds one tool call may run.
    tool_timeout_s: float = 10.0
    #: Runtime worker processes that run the tool calls.
    tool_workers: int = 4

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algorithm {self.algo!r}; known: {', '.join(ALGOS)}")
        if self.loss_agg_mode not in LOSS_MODES:
            raise ValueError(f"unknown loss aggregation {self.loss_agg_mode!r}; known: {', '.join(LOSS_MODES)}")
        if self.kl_type != "low_var_kl":
            raise ValueError("only kl_type='low_var_kl' (k3) is implemented, as the paper uses")
        if self.batch_states % self.mini_batch_states:
            raise ValueError("batch_states must be a multiple of mini_batch_states")
        if self.filter_groups and self.n < 2:
            raise ValueError("filter_groups needs n >= 2 (a group of one response has no reward spread)")
        if self.gen_batch_states and self.gen_batch_states < self.batch_states:
            raise ValueError("gen_batch_states must be at least batch_states")
        if self.engine not in TRAIN_ENGINES:
            raise ValueError(f"unknown sampling engine {self.engine!r}; known: {', '.join(TRAIN_ENGINES)}")
        if self.engine == "int8" and self.lora:
            raise ValueError("engine int8 re-quantizes the full weights; with lora use engine kvgen")
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError("n and max_new_tokens must be positive")

    @property
    def sampling(self) -> SamplingConfig:
        """The rollout knobs (verl's names above) as the sampling settings the rest of ftrl takes."""
        return SamplingConfig(
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=self.seed
        )

    @property
    def states_per_step(self) -> int:
        """States sampled each step: `gen_batch_states` when groups are filtered, else `batch_states`."""
        return (self.gen_batch_states or self.batch_states) if self.filter_groups else self.batch_states

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Overrides of the paper defaults for a ~135M model on a 2-core CPU (measured ~1 min/step, docs/training.md).
CPU_PRESET: dict[str, Any] = {
    "n": 8,
    "max_new_tokens": 96,
    "max_prompt_tokens": 2048,
    "batch_states": 2,
    "mini_batch_states": 2,
    "micro_batch_size": 8,  # = n: a state's responses share one prompt pass (`group_logprobs`)
    "lr": 1e-5,
    "gradient_checkpointing": False,
    "save_every": 5,
}
PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "cpu": CPU_PRESET}


def make_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """A config from a preset with explicit overrides on top (None values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return replace(TrainConfig(), **values)


@dataclass(kw_only=True)
class SFTConfig:
    """Every knob of `ftrl sft` (`ftrl.train.sft`); the `#:` comments are the flags' help."""

    #: `embedded`, a local HF model directory or a cached hub id.
    model: str = "embedded"
    #: Procedural environments with gold calls (extra.gold_calls).
    envs: str = ""
    #: Run directory: metrics.jsonl, model/.
    out: str = "runs/sft"
    #: Passes over the gold trajectories.
    epochs: int = 2
    #: Learning rate.
    lr: float = 1e-5
    #: Trajectories per optimizer step (one forward each, gradients accumulated).
    batch_size: int = 4
    #: Longer trajectories (in tokens) are skipped.
    max_tokens: int = 4096
    #: Train a LoRA adapter (merged into the saved model).
    lora: bool = False
    #: Keep the embeddings (tied to the LM head) and the lowest K decoder layers frozen: nothing below layer K
    #: needs a backward pass (K=10 of SmolLM2's 30 made a step 1.25x faster, benchmarks/RESULTS.md).
    freeze_layers: int = 0
    #: Seed for data order.
    seed: int = 0
    #: Local models: auto (CUDA when present), cpu or cuda (`ftrl.rollout.models.placement`).
    device: str = "auto"
    #: auto (fp32 weights), fp32, bf16 or fp16.
    dtype: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
