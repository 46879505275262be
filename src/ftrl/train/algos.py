"""Advantage estimators and the PPO-style policy loss, defined exactly as verl defines them.

The paper trains with verl (`algorithm.adv_estimator=grpo` or `reinforce_plus_plus`); these functions restate
verl's `core_algos.py` / `torch_functional.py` semantics so a run here optimises the same objective:

- `grpo`: per group of responses to one state, (r - mean) / (std + 1e-6) with the *unbiased* std; a group of
  one gets mean 0 and std 1 (so its advantage is the raw reward).
- `reinforce_plus_plus`: no baseline; the scalar reward sits on the last response token, returns are the reverse
  cumulative sum (gamma 1, so every response token carries r), then `masked_whiten` over *all* response tokens
  of the batch (unbiased variance, mean shifted to 0).
- `reinforce_plus_plus_baseline`: r - group mean (a group of one: mean 0), broadcast over tokens, then whitened
  the same way.

All tensors are `(batch, response_len)` with a 0/1 `mask` over response tokens (EOS included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import torch

from ftrl.train.config import ALGOS

GRPO_EPS = 1e-6
WHITEN_EPS = 1e-8


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (values * mask).sum(dim=dim) / mask.sum(dim=dim)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """verl's `masked_whiten(shift_mean=True)`: (v - mean) / sqrt(var + 1e-8), var with Bessel's correction."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    if count < 2:
        raise ValueError("whitening needs at least two response tokens in the batch")
    var = masked_mean((values - mean) ** 2, mask) * count / (count - 1)
    return (values - mean) * torch.rsqrt(var + WHITEN_EPS)


def _group_stats(scores: torch.Tensor, groups: Sequence[Hashable]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-response group mean and unbiased std; a group of one gets mean 0, std 1 (verl)."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    mean, std = torch.zeros_like(scores), torch.ones_like(scores)
    for rows in members.values():
        if len(rows) > 1:
            mean[rows] = scores[rows].mean()
            std[rows] = scores[rows].std()
    return mean, std


def grpo_advantages(rewards: torch.Tensor, mask: torch.Tensor, groups: Sequence[Hashable]) -> torch.Tensor:
    """GRPO outcome advantage, broadcast over each response's tokens."""
    mean, std = _group_stats(rewards, groups)
    return ((rewards - mean) / (std + GRPO_EPS)).unsqueeze(-1) * mask


def reinforce_plus_plus_advantages(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """REINFORCE++: discounted returns of a reward placed on each response's last token, whitened over the batch."""
    token_rewards = torch.zeros_like(mask, dtype=rewards.dtype)
    last = mask.sum(dim=-1).long() - 1
    token_rewards[torch.arange(len(rewards)), last] = rewards
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros_like(rewards)
    for t in reversed(range(mask.shape[1])):
        running = token_rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * mask[:, t]
    return masked_whiten(returns, mask) * mask


def reinforce_plus_plus_baseline_advantages(
    rewards: torch.Tensor, mask: torch.Tensor, groups: Sequence[Hashable]
) -> torch.Tensor:
    """REINFORCE++-baseline: reward minus its group mean on every token, whitened over the batch."""
    mean, _ = _group_stats(rewards, groups)
    return masked_whiten((rewards - mean).unsqueeze(-1) * mask, mask) * mask


def compute_advantages(
    algo: str, rewards: torch.Tensor, mask: torch.Tensor, groups: Sequence[Hashable], gamma: float = 1.0
) -> torch.Tensor:
    """Token-level advantages for `algo` (one of `ALGOS`); `groups[i]` names the state response i answers."""
    if algo == "grpo":
        return grpo_advantages(rewards, mask, groups)
    if algo == "reinforce_plus_plus":
        return reinforce_plus_plus_advantages(rewards, mask, gamma)
    if algo == "reinforce_plus_plus_baseline":
        return reinforce_plus_plus_baseline_advantages(rewards, mask, groups)
    raise ValueError(f"unknown algorithm {algo!r}; known: {', '.join(ALGOS)}")


def kl_k3(log_prob: torch.Tensor, ref_log_prob: torch.Tensor) -> torch.Tensor:
    """verl's `low_var_kl` (Schulman's k3): exp(ref - lp) - (ref - lp) - 1, log-ratio clamped to ±20, result to ±10."""
    log_ratio = torch.clamp(ref_log_prob - log_prob, min=-20, max=20)
    return torch.clamp(torch.exp(log_ratio) - log_ratio - 1, min=-10, max=10)


def agg_loss(loss: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Reduce a token loss matrix to a scalar the way verl's `agg_loss` does."""
    if mode == "token-mean":
        return masked_mean(loss, mask)
    if mode == "seq-mean-token-sum":
        return (loss * mask).sum(dim=-1).mean()
    if mode == "seq-mean-token-mean":
        return ((loss * mask).sum(dim=-1) / mask.sum(dim=-1)).mean()
    raise ValueError(f"unknown loss aggregation {mode!r}")


def policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    clip_c: float = 3.0,
    mode: str = "seq-mean-token-mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual-clip PPO loss (Ye et al. 2019 via verl): the usual clipped surrogate, and for negative advantages the
    loss is additionally capped at -A * clip_c. Returns (loss, fraction of tokens where the clip was active)."""
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, min=-20, max=20))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    surrogate = torch.maximum(unclipped, clipped)
    dual = torch.minimum(surrogate, -advantages * clip_c)
    losses = torch.where(advantages < 0, dual, surrogate)
    clip_fraction = masked_mean(torch.gt(clipped, unclipped).float(), mask)
    return agg_loss(losses, mask, mode), clip_fraction


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy of the categorical distribution given by `logits`."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
