"""Training configurations as dataclasses: `TrainConfig` (RL) with the paper's verl settings and a small-CPU
preset, and `SFTConfig` (the warm start). They import no torch, so the command line derives its flags from them
(`ftrl.cli_config`) without loading it.

`paper` restates `Scripts/FTRL-{GRPO,Reinforce++}-Qwen25.sh` plus the defaults of the reference's
`ppo_trainer.yaml` (values marked *yaml* are not in the scripts). `cpu` keeps the same objective but sizes
everything for a 135M model on two CPU cores (about a minute per step). See docs/training.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from ftrl.provenance import describe_model
from ftrl.reward.spec import RewardSpec
from ftrl.settings import Placement, SamplingConfig, results_identity, setting, setting_table
from ftrl.trackers import parse_report_to

#: The advantage estimators of `ftrl.train.algos`, by verl's names.
Algo = Literal["grpo", "reinforce_plus_plus", "reinforce_plus_plus_baseline"]
ALGOS: tuple[str, ...] = get_args(Algo)
LossAggMode = Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum"]
LOSS_MODES: tuple[str, ...] = get_args(LossAggMode)
#: Engines the trainer samples with (`ftrl.rollout.hf.ENGINES` minus hf and auto: it needs kvgen's per-token
#: log-probs).
TrainEngine = Literal["kvgen", "int8"]
TRAIN_ENGINES: tuple[str, ...] = get_args(TrainEngine)


@dataclass(kw_only=True)
class TrainConfig:
    """Every knob of `ftrl train`; defaults are the paper's (verl) values. Each field's help is its flag's help
    (`ftrl.cli_config`); `verl` names the key of verl 0.9.1 it restates, from which `ftrl export verl` writes the
    launch scripts (*yaml* in the help: only verl's yaml has the value, not the paper's scripts)."""

    model: str = setting("embedded", "`embedded`, a local HF model directory or a cached hub id.")
    data: str = setting("", "Trajectory states (JSONL/Parquet) written by `ftrl sample`.", results=False)
    out: str = setting("runs/train", "Run directory: metrics.jsonl, checkpoints/, model/.", results=False)
    algo: Algo = setting("grpo", "grpo | reinforce_plus_plus | reinforce_plus_plus_baseline (verl definitions).")
    reward: RewardSpec = setting_table(
        lambda: RewardSpec(matcher="strict"),
        "How each sampled response is scored. The matcher defaults to strict here (it cannot be stuffed, and it "
        "scores honest trajectories as the reference does: benchmarks/RESULTS.md, issue 25); the paper preset "
        "uses reference, the paper's exactly.",
    )
    # rollout
    n: int = setting(16, "Responses sampled per state (rollout.n).", verl="actor_rollout_ref.rollout.n")
    temperature: float = setting(
        0.7,
        "Sampling temperature of the responses (rollout.temperature, *yaml*).",
        verl="actor_rollout_ref.rollout.temperature",
    )
    top_p: float = setting(
        1.0,
        "Nucleus sampling threshold (rollout.top_p, *yaml*); top-k is off (-1 in verl).",
        verl="actor_rollout_ref.rollout.top_p",
    )
    max_new_tokens: int = setting(
        1024,
        "Longest response in tokens (data.max_response_length).",
        verl="data.max_response_length",
    )
    max_prompt_tokens: int = setting(
        16384,
        "States with longer prompts are skipped (data.max_prompt_length, filter_overlong_prompts).",
        verl="data.max_prompt_length",
    )
    engine: TrainEngine = setting(
        "kvgen",
        "Sampling engine: kvgen (the trained fp32 weights) or int8 (kvgen over an int8 per-channel copy, "
        "re-quantized after every optimizer step; faster on a CPU, log-prob mismatch logged as logprob_mismatch).",
    )
    # batch sizes, in states (verl counts prompts): each step samples `batch_states * n` responses
    batch_states: int = setting(512, "States per step (data.train_batch_size).", verl="data.train_batch_size")
    mini_batch_states: int = setting(
        32,
        "States per optimizer update (actor.ppo_mini_batch_size): batch_states / mini_batch_states updates a "
        "step. Follows --batch-states when only that is given.",
        verl="actor_rollout_ref.actor.ppo_mini_batch_size",
    )
    micro_batch_size: int = setting(
        8, "Responses per forward/backward pass (memory only; gradients are accumulated).", results=False
    )
    filter_groups: bool = setting(
        False,
        "Dynamic sampling (DAPO; verl algorithm.filter_groups, off in the paper): sample --gen-batch-states "
        "states a step and train on the first --batch-states whose responses' rewards differ (equal ones give "
        "GRPO nothing).",
    )
    gen_batch_states: int = setting(
        0,
        "States sampled per step with --filter-groups (data.gen_batch_size; 0: --batch-states).",
    )
    prefer_solved: bool = setting(
        False,
        "With --filter-groups, pick first the groups where some response earned a positive reward; groups whose "
        "rewards differ only between 0 and the format penalties come after them (not in verl or the paper).",
    )
    ppo_epochs: int = setting(
        1,
        "Passes over each step's responses (actor.ppo_epochs, *yaml*).",
        verl="actor_rollout_ref.actor.ppo_epochs",
    )
    # objective
    lr: float = setting(
        1e-6,
        "Learning rate, constant (actor.optim.lr; warmup_style constant, *yaml*).",
        verl="actor_rollout_ref.actor.optim.lr",
    )
    weight_decay: float = setting(
        0.01,
        "AdamW weight decay (*yaml*).",
        verl="actor_rollout_ref.actor.optim.weight_decay",
    )
    grad_clip: float = setting(
        1.0,
        "Gradient norm clip (actor.grad_clip, *yaml*).",
        verl="actor_rollout_ref.actor.grad_clip",
    )
    clip_ratio: float = setting(
        0.2,
        "PPO ratio clip (actor.clip_ratio, *yaml*).",
        verl="actor_rollout_ref.actor.clip_ratio",
    )
    clip_ratio_c: float = setting(
        3.0,
        "Dual-clip lower bound for negative advantages (actor.clip_ratio_c, *yaml*).",
        verl="actor_rollout_ref.actor.clip_ratio_c",
    )
    kl_coef: float = setting(
        0.001,
        "Weight of the k3 KL loss to the starting policy (actor.kl_loss_coef; 0: no reference model, no reference"
        " pass).",
        verl="actor_rollout_ref.actor.kl_loss_coef",
    )
    kl_type: Literal["low_var_kl"] = setting(
        "low_var_kl",
        "KL estimator (actor.kl_loss_type); only low_var_kl (k3) is implemented.",
        verl="actor_rollout_ref.actor.kl_loss_type",
    )
    entropy_coef: float = setting(
        0.001,
        "Weight of the entropy bonus (actor.entropy_coeff).",
        verl="actor_rollout_ref.actor.entropy_coeff",
    )
    loss_agg_mode: LossAggMode = setting(
        "seq-mean-token-mean",
        "Loss aggregation: seq-mean-token-mean, token-mean or seq-mean-token-sum (actor.loss_agg_mode, *yaml*).",
        verl="actor_rollout_ref.actor.loss_agg_mode",
    )
    gamma: float = setting(1.0, "Discount of REINFORCE++ returns (algorithm.gamma).", verl="algorithm.gamma")
    # model
    lora: bool = setting(False, "Train a LoRA adapter (merged into the saved model).")
    lora_r: int = setting(16, "LoRA rank.")
    lora_alpha: int = setting(32, "LoRA alpha.")
    gradient_checkpointing: bool = setting(
        True,
        "Recompute activations in the backward pass to save memory (model.enable_gradient_checkpointing).",
        verl="actor_rollout_ref.model.enable_gradient_checkpointing",
    )
    freeze_layers: int = setting(
        0,
        "Keep the embeddings and the lowest K decoder layers frozen (no backward pass below layer K: a cheaper "
        "step on a CPU). Not in the paper, which trains every weight.",
    )
    placement: Placement = setting_table(Placement, "Where the trained model runs.")
    # run
    steps: int = setting(0, "Optimizer steps (0: one pass over the data, trainer.total_epochs=1).", results=False)
    save_every: int = setting(
        120, "Checkpoint every this many steps (trainer.save_freq).", verl="trainer.save_freq", results=False
    )
    keep_checkpoints: int = setting(2, "Checkpoints kept on disk (the newest).", results=False)
    seed: int = setting(0, "Seed for data order and sampling.")
    tool_timeout_s: float = setting(10.0, "Seconds one tool call may run.")
    tool_workers: int = setting(4, "Runtime worker processes that run the tool calls.", results=False)
    log_samples: int = setting(
        4,
        "States per step whose sampled responses, rewards and advantages go to samples.jsonl (the viewer's RL "
        "samples; texts cut at 2,000 characters); 0: none.",
        results=False,
    )
    report_to: str = setting(
        "",
        "Also send the metrics to these trackers: tensorboard, wandb, mlflow, trackio (comma-separated; each is an "
        "optional extra, `pip install ftrl[tensorboard]`...); files go under OUT/trackers.",
        results=False,
    )

    def __post_init__(self) -> None:
        parse_report_to(self.report_to)
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

    def results_settings(self) -> dict[str, Any]:
        """What decides the weights, for the resume check: run length, checkpointing, memory knobs and paths may
        change on a resume (fields declared with `results=False`); the model by content. The reward and placement
        tables are recorded under the flat keys runs have always had, so earlier runs still resume."""
        identity = results_identity(self)
        reward = identity.pop("reward")
        identity |= {"reward": reward["kind"], "matcher": reward["matcher"], "fmt": reward["fmt"]}
        identity |= identity.pop("placement")
        return {**identity, "model": describe_model(self.model)}

    @property
    def states_per_step(self) -> int:
        """States sampled each step: `gen_batch_states` when groups are filtered, else `batch_states`."""
        return (self.gen_batch_states or self.batch_states) if self.filter_groups else self.batch_states

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
PRESETS: dict[str, dict[str, Any]] = {"paper": {"reward": RewardSpec(matcher="reference")}, "cpu": CPU_PRESET}


def follow_batch_states(values: dict[str, Any]) -> dict[str, Any]:
    """Config values where `mini_batch_states` follows `batch_states` when only that is given: one update a step
    unless told otherwise."""
    if "batch_states" in values and "mini_batch_states" not in values:
        return values | {"mini_batch_states": values["batch_states"]}
    return values


def make_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """A config from a preset with explicit overrides on top (None values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return replace(TrainConfig(), **values)


@dataclass(kw_only=True)
class SFTConfig:
    """Every knob of `ftrl sft` (`ftrl.train.sft`); each field's help is its flag's help."""

    model: str = setting("embedded", "`embedded`, a local HF model directory or a cached hub id.")
    envs: str = setting("", "Procedural environments with gold calls (extra.gold_calls).", results=False)
    out: str = setting("runs/sft", "Run directory: metrics.jsonl, model/.", results=False)
    epochs: int = setting(2, "Passes over the gold trajectories.")
    lr: float = setting(1e-5, "Learning rate.")
    batch_size: int = setting(4, "Trajectories per optimizer step (one forward each, gradients accumulated).")
    max_tokens: int = setting(4096, "Longer trajectories (in tokens) are skipped.")
    lora: bool = setting(False, "Train a LoRA adapter (merged into the saved model).")
    freeze_layers: int = setting(
        0,
        "Keep the embeddings (tied to the LM head) and the lowest K decoder layers frozen: nothing below layer K "
        "needs a backward pass (K=10 of SmolLM2's 30 made a step 1.25x faster, benchmarks/RESULTS.md).",
    )
    seed: int = setting(0, "Seed for data order.")
    placement: Placement = setting_table(Placement, "Where the trained model runs.")
    report_to: str = setting(
        "",
        "Also send the metrics to these trackers: tensorboard, wandb, mlflow, trackio (comma-separated; optional "
        "extras); files go under OUT/trackers.",
        results=False,
    )

    def __post_init__(self) -> None:
        parse_report_to(self.report_to)

    def results_settings(self) -> dict[str, Any]:
        """What decides the weights, for the resume check; paths are recorded as None and the placement under flat
        keys (the shape earlier versions wrote, so their outputs still resume), the inputs by content."""
        fixed = {item.name: None for item in fields(self) if not item.metadata.get("results", True)}
        values = self.to_dict()
        values |= values.pop("placement")
        return {**values, "model": describe_model(self.model), **fixed}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
