"""Training configuration as a dataclass, with the paper's verl settings and a small-CPU preset.

`paper` restates `Scripts/FTRL-{GRPO,Reinforce++}-Qwen25.sh` plus the defaults of the reference's
`ppo_trainer.yaml` (values marked *yaml* are not in the scripts). `cpu` keeps the same objective but sizes
everything for a 135M model on two CPU cores (about a minute per step). See docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ftrl.train.algos import ALGOS

LOSS_MODES = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum")


@dataclass
class TrainConfig:
    """Every knob of `ftrl train`; defaults are the paper's (verl) values."""

    model: str = "embedded"
    data: str = ""
    out: str = "runs/train"
    algo: str = "grpo"
    reward: str = "f1"  # f1 | p | r | pr (Solve-F1 is the paper's default)
    matcher: str = "reference"
    fmt: str = "hermes"
    # rollout
    n: int = 16  # rollout.n
    temperature: float = 0.7  # rollout.temperature (yaml)
    top_p: float = 1.0  # rollout.top_p (yaml); top_k is off (-1 in verl)
    max_new_tokens: int = 1024  # data.max_response_length
    max_prompt_tokens: int = 16384  # data.max_prompt_length; longer states are skipped (filter_overlong_prompts)
    # batch sizes, in states (verl counts prompts): each step samples `batch_states * n` responses
    batch_states: int = 512  # data.train_batch_size
    mini_batch_states: int = 32  # actor.ppo_mini_batch_size -> batch_states / mini_batch_states updates a step
    micro_batch_size: int = 8  # responses per forward/backward (memory only; gradients are accumulated)
    # dynamic sampling (DAPO; verl algorithm.filter_groups, off in the paper): sample `gen_batch_states` states
    # and train on the first `batch_states` whose responses' rewards differ (equal rewards: no GRPO signal)
    filter_groups: bool = False
    gen_batch_states: int = 0  # data.gen_batch_size; 0: batch_states
    ppo_epochs: int = 1  # actor.ppo_epochs (yaml)
    # objective
    lr: float = 1e-6  # actor.optim.lr, constant (warmup_style constant, yaml)
    weight_decay: float = 0.01  # AdamW (yaml)
    grad_clip: float = 1.0  # actor.grad_clip (yaml)
    clip_ratio: float = 0.2  # actor.clip_ratio (yaml)
    clip_ratio_c: float = 3.0  # dual-clip lower bound (yaml)
    kl_coef: float = 0.001  # actor.use_kl_loss=True, kl_loss_coef
    kl_type: str = "low_var_kl"  # kl_loss_type; the k3 estimator is the only one implemented
    entropy_coef: float = 0.001  # actor.entropy_coeff
    loss_agg_mode: str = "seq-mean-token-mean"  # yaml
    gamma: float = 1.0  # algorithm.gamma (REINFORCE++ returns)
    # model
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    gradient_checkpointing: bool = True  # model.enable_gradient_checkpointing
    #: > 0: keep the embeddings and the lowest k decoder layers fixed (no backward pass below layer k; a cheaper
    #: step on a CPU). Not in the paper, which trains every weight.
    freeze_layers: int = 0
    device: str = "auto"  # auto | cpu | cuda (`ftrl.rollout.models.placement`)
    dtype: str = "auto"  # auto (fp32 weights: bf16 would round lr-1e-6 updates away) | fp32 | bf16 | fp16
    # run
    steps: int = 0  # 0: one pass over the data (trainer.total_epochs=1)
    save_every: int = 120  # trainer.save_freq
    keep_checkpoints: int = 2
    seed: int = 0
    tool_timeout_s: float = 10.0
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
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError("n and max_new_tokens must be positive")

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
