"""`ftrl train` on a tiny random model: batching, the update direction, metrics, saving and kill/resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from ftrl.env import Environment, read_envs, write_envs
from ftrl.settings import SamplingConfig
from ftrl.train.actor import sample
from ftrl.train.algos import grpo_advantages
from ftrl.train.config import make_config
from ftrl.train.trainer import DataCursor, Trainer, groups_to_train, ranked_groups, train

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a word.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftrl.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> Path:
    envs = [
        Environment(
            messages=[{"role": "user", "content": f"What is {word}?"}],
            tools=[LOOKUP],
            codes={"lookup": "def lookup(q):\n    return q.upper()\n"},
            unsolved_set={"lookup": [word.upper()]},
            answer=word.upper(),
            data_source="self/single_hop",
            split="train",
            extra={"index": i},
        )
        for i, word in enumerate(["alpha", "beta", "gamma", "delta"])
    ]
    path = tmp_path_factory.mktemp("states") / "states.jsonl"
    write_envs(path, envs)
    return path


def tiny_config(tiny: Path, states: Path, out: Path, **overrides: object):
    values = {
        "model": str(tiny),
        "data": str(states),
        "out": str(out),
        "n": 4,
        "max_new_tokens": 8,
        "batch_states": 2,
        "mini_batch_states": 2,
        "lr": 1e-3,
        "save_every": 2,
    }
    return make_config("cpu", **{**values, **overrides})


def letter_a(env: Environment, text: str) -> tuple[float, int]:
    """A dense test reward: the share of `a` characters (the random policy never calls tools)."""
    return text.count("a") / max(1, len(text)), 0


def test_data_cursor_reshuffles_each_epoch_and_resumes() -> None:
    cursor = DataCursor(size=5, seed=3)
    first = cursor.take(3) + cursor.take(3)  # crosses into epoch 1 after 5 states
    assert sorted(first[:5]) == [0, 1, 2, 3, 4] and (cursor.epoch, cursor.position) == (1, 1)
    again = DataCursor(size=5, seed=3, epoch=1, position=1)
    assert again.take(4) == cursor.take(4)  # the saved (epoch, position) continues the same order


def test_update_moves_probability_toward_high_reward_responses(tiny: Path, states: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tiny, states, tmp_path, lr=1e-2, kl_coef=0.0, entropy_coef=0.0), scorer=letter_a)
    sampling = SamplingConfig(max_new_tokens=8, temperature=0.7)
    batch = sample(trainer.model, trainer.tokenizer, trainer.prompts[:1], n=4, sampling=sampling)
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])  # response 0 is the only good one
    advantages = grpo_advantages(rewards, batch.response_mask, [0, 0, 0, 0])
    before = (trainer._logprobs(trainer.model, batch) * batch.response_mask).sum(dim=1)
    metrics = trainer.update(batch, advantages)
    after = (trainer._logprobs(trainer.model, batch) * batch.response_mask).sum(dim=1)
    assert metrics["clip_frac"] == 0.0  # one update on fresh samples: ratio exactly 1
    # every response runs to its end-of-turn token (kept, inside the mask) or to the token limit
    eos = set(trainer.tokenizer.all_special_ids) | {trainer.tokenizer.eos_token_id}
    for row, length in enumerate(batch.response_mask.sum(dim=1).long().tolist()):
        last = int(batch.input_ids[row, batch.prompt_width + length - 1])
        assert length == 8 or last in eos
    assert after[0] > before[0]
    assert (after[1:] - before[1:]).mean() < 0


def test_train_runs_with_the_tool_runtime_and_saves_a_loadable_model(tiny: Path, states: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    saved = train(tiny_config(tiny, states, tmp_path / "run", steps=2, algo="reinforce_plus_plus"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    for key in ("reward_mean", "reward_std", "kl", "entropy", "clip_frac", "response_len", "tool_call_rate", "seconds"):
        assert isinstance(rows[0][key], float), key
    assert rows[0]["reward_tool_calls"] is None  # a random byte model makes no tool call
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0.0  # the policy only leaves the reference after step 1
    model = AutoModelForCausalLM.from_pretrained(saved)
    assert model.config.vocab_size == 259
    assert (tmp_path / "run" / "checkpoints" / "step_2" / "trainer_state.json").exists()
    # the viewer's RL samples: each step's states (batch_states=2, under log_samples=4) with every response
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [row["step"] for row in samples] == [1, 1, 2, 2]
    for row in samples:
        assert row["trained"] and row["messages"][-1]["role"] == "user" and len(row["responses"]) == 4
        assert all(isinstance(r["reward"], float) and isinstance(r["advantage"], float) for r in row["responses"])


def test_groups_to_train_prefers_groups_whose_rewards_differ() -> None:
    assert groups_to_train([1, 3], drawn=4, wanted=2, filter_groups=False) == [0, 1, 2, 3]
    assert groups_to_train([1, 2, 3], drawn=4, wanted=2, filter_groups=True) == [1, 2]
    assert groups_to_train([3], drawn=4, wanted=2, filter_groups=True) == [0, 3]  # topped up in draw order
    assert groups_to_train([], drawn=4, wanted=2, filter_groups=True) == [0, 1]


def test_ranked_groups_puts_groups_with_a_success_first_only_when_asked() -> None:
    differ = [True, True, False, True]
    solved = [False, False, False, True]  # group 3 has a positive reward; 0 and 1 differ only below zero
    assert ranked_groups(differ, solved, prefer_solved=False) == [0, 1, 3]
    assert ranked_groups(differ, solved, prefer_solved=True) == [3, 0, 1]
    assert groups_to_train(ranked_groups(differ, solved, True), drawn=4, wanted=2, filter_groups=True) == [0, 3]
    assert groups_to_train(ranked_groups(differ, solved, False), drawn=4, wanted=2, filter_groups=True) == [0, 1]


def test_prefer_solved_trains_on_the_state_whose_responses_succeed(
    tiny: Path, states: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ftrl.train.trainer as trainer_module

    calls: Counter[str] = Counter()

    def success_only_for_gamma(env: Environment, text: str) -> tuple[float, int]:
        calls[env.answer] += 1
        if env.answer == "GAMMA":  # every other response solves it
            return float(calls[env.answer] % 2), 1
        return -0.3 * (calls[env.answer] % 2), 0  # spread only between 0 and a format penalty

    trained: dict[bool, list[str]] = {}
    advantages = trainer_module.compute_advantages
    for prefer in (False, True):
        config = tiny_config(
            tiny,
            states,
            tmp_path / str(prefer),
            filter_groups=True,
            gen_batch_states=4,
            batch_states=1,
            mini_batch_states=1,
            prefer_solved=prefer,
            seed=1,
        )
        trainer = Trainer(config, scorer=success_only_for_gamma)
        assert [trainer.states[i].answer for i in DataCursor(4, seed=1).take(4)][0] == "BETA"  # drawn first

        def record(algo, rewards, mask, groups, gamma, trainer=trainer, prefer=prefer):
            trained[prefer] = sorted({trainer.states[group].answer for group in groups})
            return advantages(algo, rewards, mask, groups, gamma)

        monkeypatch.setattr(trainer_module, "compute_advantages", record)
        metrics = trainer.train_step(success_only_for_gamma)
        assert metrics["solved_groups"] == 0.25 and metrics["informative_groups"] == 1.0
    assert trained[True] == ["GAMMA"]
    assert trained[False] == ["BETA"]  # without the preference: the first drawn whose rewards differ


def test_filter_groups_trains_only_on_states_with_reward_spread(tiny: Path, states: Path, tmp_path: Path) -> None:
    def flat_for_alpha_and_beta(env: Environment, text: str) -> tuple[float, int]:
        return (1.0, 0) if env.answer in ("ALPHA", "BETA") else (sum(map(ord, text)) % 7 / 6, 0)

    config = tiny_config(tiny, states, tmp_path, filter_groups=True, gen_batch_states=4, temperature=1.0)
    trainer = Trainer(config, scorer=flat_for_alpha_and_beta)
    trained: list[tuple[int, torch.Tensor]] = []
    update = trainer.update
    trainer.update = lambda batch, advantages: trained.append((len(batch), advantages)) or update(batch, advantages)
    metrics = trainer.train_step(flat_for_alpha_and_beta)
    assert metrics["informative_groups"] == 0.5  # gamma and delta; alpha and beta score 1.0 whatever is said
    size, advantages = trained[0]
    assert size == 2 * config.n
    assert (advantages.abs().sum(dim=1) > 0).all()  # every trained response carries a learning signal
    logged = {row["answer"]: row for row in trainer.samples}
    assert len(logged) == 4  # every drawn state, trained or not
    assert not logged["ALPHA"]["trained"] and all(r["advantage"] is None for r in logged["ALPHA"]["responses"])
    assert logged["GAMMA"]["trained"] and any(r["advantage"] for r in logged["GAMMA"]["responses"])
    assert all(r["reward"] == 1.0 for r in logged["BETA"]["responses"])
    with pytest.raises(ValueError, match="at least batch_states"):
        tiny_config(tiny, states, tmp_path, filter_groups=True, gen_batch_states=1)


class Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_the_same_parameters(tiny: Path, states: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = {
        "steps": 3,
        "save_every": 1,
        "lora": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "algo": "reinforce_plus_plus_baseline",
    }
    whole = train(tiny_config(tiny, states, tmp_path / "whole", **config), scorer=letter_a)

    calls = 0

    def crashing(env: Environment, text: str) -> tuple[float, int]:
        nonlocal calls
        calls += 1
        if calls > 8 + 3:  # dies while scoring step 2 (8 responses a step), after the step-1 checkpoint
            raise Crash
        return letter_a(env, text)

    with pytest.raises(Crash):
        train(tiny_config(tiny, states, tmp_path / "broken", **config), scorer=crashing)
    assert not (tmp_path / "broken" / "model").exists()
    resumed = train(tiny_config(tiny, states, tmp_path / "broken", **config), scorer=letter_a)
    rows = [json.loads(line) for line in (tmp_path / "broken" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    reference = load_file(Path(tiny) / "model.safetensors")
    assert any(not torch.equal(a[k], reference[k]) for k in a)  # training changed the (merged) weights
    whole_rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward_mean"] for r in rows] == [r["reward_mean"] for r in whole_rows]


def test_overlong_states_are_skipped(tiny: Path, states: Path, tmp_path: Path) -> None:
    n_states = len(read_envs(states))
    with pytest.raises(ValueError, match="no state fits"):
        Trainer(tiny_config(tiny, states, tmp_path, max_prompt_tokens=10), scorer=letter_a)
    assert len(Trainer(tiny_config(tiny, states, tmp_path), scorer=letter_a).states) == n_states


def test_shared_prompt_log_probs_equal_full_sequences_in_value_and_gradient(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM

    from ftrl.train.actor import group_logprobs

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    prompt = torch.randint(3, 250, (23,))
    responses = torch.randint(3, 250, (4, 6))
    temperature = 0.7

    def full_sequences() -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.cat([prompt.expand(4, -1), responses], dim=1)
        logits = model(input_ids=ids).logits[:, prompt.shape[0] - 1 : -1].float() / temperature
        log_probs = logits.log_softmax(-1).gather(-1, responses.unsqueeze(-1)).squeeze(-1)
        entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
        return log_probs, entropy

    expected, expected_entropy = full_sequences()
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ours, entropy = group_logprobs(model, prompt, responses, temperature, with_entropy=True)
    assert ours.shape == (4, 6)
    assert torch.allclose(ours, expected, atol=1e-5) and torch.allclose(entropy, expected_entropy, atol=1e-5)
    ours.sum().backward()
    for grad, expected_grad in zip((p.grad for p in model.parameters()), expected_grads, strict=False):
        assert torch.allclose(grad, expected_grad, atol=1e-5, rtol=1e-4)
    # a one-token response needs only the prompt pass
    single, _ = group_logprobs(model, prompt, responses[:, :1], temperature)
    assert torch.allclose(single, expected[:, :1], atol=1e-5)


def test_shared_prompt_log_probs_fall_back_to_full_sequences_under_gradient_checkpointing(tiny: Path) -> None:
    from ftrl.train.actor import group_logprobs, load_trainable_model

    torch.manual_seed(1)
    model, _ = load_trainable_model(tiny)
    checkpointed, _ = load_trainable_model(tiny, gradient_checkpointing=True)
    prompt, responses = torch.randint(3, 250, (17,)), torch.randint(3, 250, (3, 5))
    model.train()
    checkpointed.train()
    plain, _ = group_logprobs(model, prompt, responses, 1.0)
    fallback, _ = group_logprobs(checkpointed, prompt, responses, 1.0)
    assert torch.allclose(plain, fallback, atol=1e-5)
    fallback.sum().backward()
    assert all(p.grad is not None for p in checkpointed.parameters() if p.requires_grad)


def test_frozen_layers_and_no_reference_pass(tiny: Path, states: Path, tmp_path: Path) -> None:
    """freeze_layers keeps the embeddings and the bottom layers fixed while the rest moves; kl_coef 0 drops the
    reference model; each step reports how long its phases took and how many turns it sampled."""
    torch.manual_seed(0)
    config = tiny_config(tiny, states, tmp_path, freeze_layers=1, kl_coef=0.0, steps=1)
    trainer = Trainer(config, scorer=letter_a)
    assert trainer.reference is None
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    metrics = trainer.train_step(letter_a)
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])}
    assert not any(".layers.0." in name or "embed_tokens" in name for name in changed)
    assert any(".layers.1." in name for name in changed)
    assert metrics["sampled_turns"] == config.batch_states * config.n
    phases = ("seconds_sample", "seconds_score", "seconds_reference", "seconds_update")
    assert all(metrics[key] >= 0 for key in phases)
    assert sum(metrics[key] for key in phases) <= metrics["seconds"] + 1e-6
