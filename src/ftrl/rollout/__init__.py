"""Rollouts: policies (local model, OpenAI-compatible endpoint, gold trajectories), the batched multi-turn engine and
trajectory collection (`ftrl sample`). Torch is imported only when a local model is loaded."""

from ftrl.models import ModelNotFound, resolve_model
from ftrl.rollout.collect import collect, episode_states
from ftrl.rollout.engine import EpisodeResult, RolloutConfig, StatePoint, run_rollouts
from ftrl.rollout.load import PolicySpec, load_policy
from ftrl.rollout.policy import GenerationStats, GoldPolicy, Policy

__all__ = [
    "StatePoint",
    "EpisodeResult",
    "GenerationStats",
    "ModelNotFound",
    "GoldPolicy",
    "Policy",
    "PolicySpec",
    "RolloutConfig",
    "collect",
    "episode_states",
    "load_policy",
    "resolve_model",
    "run_rollouts",
]
