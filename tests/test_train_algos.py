"""Advantage estimators and losses against hand-computed values (verl semantics)."""

from __future__ import annotations

import math

import pytest
import torch

from ftrl.train.algos import (
    agg_loss,
    compute_advantages,
    entropy_from_logits,
    grpo_advantages,
    kl_k3,
    masked_whiten,
    policy_loss,
    reinforce_plus_plus_advantages,
    reinforce_plus_plus_baseline_advantages,
)


def lengths_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths])


def test_grpo_unbiased_std_single_group_and_flat_group() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 0.5, 0.5])
    groups = ["a", "a", "a", "a", "b", "c", "c"]
    mask = lengths_mask([2, 1, 3, 3, 2, 1, 1], 3)
    adv = grpo_advantages(rewards, mask, groups)
    # group a: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.577350; 0.5 / (0.577350 + 1e-6) = 0.866024
    high = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert adv[0].tolist() == pytest.approx([high, high, 0.0], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([-high, 0.0, 0.0], abs=1e-6)
    assert adv[3].tolist() == pytest.approx([high] * 3, abs=1e-6)
    # group b has one member: mean 0, std 1 -> (2 - 0) / (1 + 1e-6)
    assert adv[4, 0].item() == pytest.approx(2.0 / (1 + 1e-6), abs=1e-6)
    # group c is flat: 0 / (0 + 1e-6) = 0
    assert adv[5:].abs().sum().item() == 0.0


def test_reinforce_plus_plus_whitens_returns_over_all_tokens() -> None:
    rewards = torch.tensor([1.0, 0.0, -1.0])
    mask = lengths_mask([2, 1, 3], 3)
    adv = reinforce_plus_plus_advantages(rewards, mask)
    # returns (gamma 1) carry r on every valid token: 1,1 | 0 | -1,-1,-1; 6 tokens, mean -1/6
    # squared deviations: 2*(7/6)^2 + (1/6)^2 + 3*(5/6)^2 = 174/36; unbiased var = 174/36/5 = 0.966667
    std = math.sqrt(174 / 36 / 5 + 1e-8)
    expected = [[7 / 6 / std, 7 / 6 / std, 0.0], [1 / 6 / std, 0.0, 0.0], [-5 / 6 / std] * 3]
    assert adv.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
    # the advantages are whitened: token mean 0, unbiased token variance ~1
    assert (adv * mask).sum().item() == pytest.approx(0.0, abs=1e-6)


def test_reinforce_plus_plus_gamma_discounts_toward_the_start() -> None:
    # one response of 3 tokens with reward 1 and gamma 0.5: returns 0.25, 0.5, 1 -> whitened
    rewards, mask = torch.tensor([1.0]), torch.ones(1, 3)
    adv = reinforce_plus_plus_advantages(rewards, mask, gamma=0.5)
    mean = 1.75 / 3  # 0.583333
    var = ((0.25 - mean) ** 2 + (0.5 - mean) ** 2 + (1 - mean) ** 2) / 2  # unbiased: 0.291667 / 2 = 0.145833
    expected = [(v - mean) / math.sqrt(var + 1e-8) for v in (0.25, 0.5, 1.0)]
    assert adv[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_reinforce_plus_plus_baseline_subtracts_group_mean_then_whitens() -> None:
    rewards = torch.tensor([1.0, 0.0, 3.0])
    groups = [7, 7, 9]
    mask = lengths_mask([1, 2, 1], 2)
    adv = reinforce_plus_plus_baseline_advantages(rewards, mask, groups)
    # group 7 mean 0.5 -> 0.5, -0.5; group 9 alone -> mean 0 -> 3. Tokens: 0.5 | -0.5, -0.5 | 3 (mean 0.625)
    # squared deviations 0.015625 + 2 * 1.265625 + 5.640625 = 8.1875; unbiased var 8.1875 / 3
    std = math.sqrt(8.1875 / 3 + 1e-8)
    expected = [[-0.125 / std, 0.0], [-1.125 / std, -1.125 / std], [2.375 / std, 0.0]]
    assert adv.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]


def test_compute_advantages_dispatch_and_unknown() -> None:
    rewards, mask = torch.tensor([1.0, 0.0]), torch.ones(2, 2)
    assert torch.equal(compute_advantages("grpo", rewards, mask, [0, 0]), grpo_advantages(rewards, mask, [0, 0]))
    with pytest.raises(ValueError, match="unknown algorithm"):
        compute_advantages("ppo", rewards, mask, [0, 0])


def test_masked_whiten_needs_two_tokens() -> None:
    with pytest.raises(ValueError):
        masked_whiten(torch.tensor([[1.0, 5.0]]), torch.tensor([[1.0, 0.0]]))


def test_dual_clip_policy_loss_and_aggregation_modes() -> None:
    ratios = torch.tensor([[1.5, 1.0, 1.0], [5.0, 0.5, 1.0]])
    advantages = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]])
    mask = lengths_mask([2, 3], 3)
    old = torch.zeros(2, 3)
    # token losses: A=+1, r=1.5 -> max(-1.5, -1.2) = -1.2 (clipped); A=+1, r=1 -> -1
    # A=-1, r=5 -> max(5, 1.2) = 5, dual clip min(5, 3) = 3; A=-1, r=0.5 -> max(0.5, 0.8) = 0.8; A=-1, r=1 -> 1
    loss, clip_fraction = policy_loss(ratios.log(), old, advantages, mask)
    assert loss.item() == pytest.approx(((-1.2 - 1) / 2 + (3 + 0.8 + 1) / 3) / 2, abs=1e-6)  # 0.25
    assert clip_fraction.item() == pytest.approx(2 / 5)  # the r=1.5 and r=0.5 tokens
    token_mean, _ = policy_loss(ratios.log(), old, advantages, mask, mode="token-mean")
    assert token_mean.item() == pytest.approx((-1.2 - 1 + 3 + 0.8 + 1) / 5, abs=1e-6)  # 0.52
    seq_sum = agg_loss(torch.ones(2, 3), mask, "seq-mean-token-sum")
    assert seq_sum.item() == pytest.approx((2 + 3) / 2)


def test_k3_kl_and_entropy() -> None:
    # lp = log 0.5, ref = log 0.25: log-ratio -log 2, k3 = 0.5 + log 2 - 1 = 0.193147
    value = kl_k3(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert value.item() == pytest.approx(0.5 + math.log(2) - 1, abs=1e-6)
    assert kl_k3(torch.tensor([-1.3]), torch.tensor([-1.3])).item() == 0.0
    # uniform over 4 symbols: entropy log 4
    assert entropy_from_logits(torch.zeros(1, 4)).item() == pytest.approx(math.log(4), abs=1e-6)
