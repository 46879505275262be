"""`ftrl train`: per-turn policy-gradient RL on trajectory states with the verifiable tool-use reward.

One step: take `batch_states` states, sample `n` next assistant turns for each, score every turn with the
per-turn reward (parse, run the tool calls in the sandboxed runtime, Solve-F1 by default), turn rewards into
advantages (`grpo`, `reinforce_plus_plus`, `reinforce_plus_plus_baseline`), and apply the dual-clip PPO loss with
a k3 KL to the frozen starting policy and an entropy bonus. A small trainer of our own rather than TRL's GRPOTrainer:
TRL has no REINFORCE++ estimators and its advantage code is inline, while the paper's results depend on
verl's exact definitions (docs/training.md).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from ftrl.env import Environment, read_envs
from ftrl.formats.render import render_prompt as render_messages
from ftrl.formats.render import template_supports_tools, tool_prompt_messages
from ftrl.jsonl import JsonlAppender, iter_jsonl, write_jsonl_atomic
from ftrl.progress import make_progress
from ftrl.runtime.protocol import ToolRunner
from ftrl.trackers import MetricsLog
from ftrl.train.actor import (
    RolloutBatch,
    freeze_bottom,
    frozen_copy,
    group_logprobs,
    load_trainable_model,
    sample,
    save_hf,
)
from ftrl.train.algos import agg_loss, compute_advantages, kl_k3, policy_loss
from ftrl.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from ftrl.train.config import TrainConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: `(state, response text) -> (reward, number of parsed tool calls)`.
Scorer = Callable[[Environment, str], tuple[float, int]]

METRICS_FILE = "metrics.jsonl"
#: Per step, up to `log_samples` states with their sampled responses, rewards and advantages (the viewer's RL view).
SAMPLES_FILE = "samples.jsonl"
FINAL_MODEL = "model"
#: Longest text kept in samples.jsonl (a state's last messages, a response).
SAMPLE_CHARS = 2000


def prompt_messages(env: Environment) -> list[dict[str, Any]]:
    """The chat messages a template without tool support sees for a state (`ftrl.formats.render`)."""
    return tool_prompt_messages(env.messages, env.tools)


def render_prompt(tokenizer: PreTrainedTokenizerBase, env: Environment, native: bool | None = None) -> str:
    """The generation prompt text for a state, exactly as evaluation renders it (`ftrl.formats.render`)."""
    return render_messages(tokenizer, env.messages, env.tools, native=native)


def runtime_scorer(config: TrainConfig) -> tuple[AbstractContextManager[ToolRunner], Callable[[ToolRunner], Scorer]]:
    """The default scorer: `ftrl.reward.score_response` with tools executed in a `ToolRuntime`."""
    from ftrl.reward import score_response
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    def bind(runtime: ToolRunner) -> Scorer:
        def score(env: Environment, text: str) -> tuple[float, int]:
            scored = score_response(text, env, runtime, config.reward)
            return scored.reward, scored.turn.n_calls

        return score

    return ToolRuntime(RuntimeConfig(timeout_s=config.tool_timeout_s, workers=config.tool_workers)), bind


@dataclass
class DataCursor:
    """Where training is in the data: epoch `epoch`, the `position`-th state of that epoch's shuffled order."""

    size: int
    seed: int
    epoch: int = 0
    position: int = 0

    def take(self, count: int) -> list[int]:
        """The next `count` state indices (a new shuffle each epoch, like verl's shuffled dataloader)."""
        taken: list[int] = []
        while len(taken) < count:
            order = list(range(self.size))
            random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
            chunk = order[self.position : self.position + count - len(taken)]
            taken += chunk
            self.position += len(chunk)
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
        return taken


class Trainer:
    """Holds the policy, reference, optimizer and data; `run()` trains to `config.steps` and saves the model."""

    def __init__(self, config: TrainConfig, scorer: Scorer | None = None, console: Console | None = None):
        from ftrl.models import resolve_model

        self.config = config
        self.out = Path(config.out)
        self.console = console or Console(stderr=True)
        self.scorer = scorer
        self.model_path = resolve_model(config.model)
        model, self.tokenizer = load_trainable_model(
            self.model_path,
            lora=config.lora,
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            gradient_checkpointing=config.gradient_checkpointing,
            device=config.placement.device,
            dtype=config.placement.dtype,
        )
        self.model: Any = model  # a peft model (with `disable_adapter`) when config.lora
        if config.freeze_layers:
            freeze_bottom(self.model, config.freeze_layers)
        self.reference = frozen_copy(self.model) if config.kl_coef and not config.lora else None
        #: The model that samples: the trained one, or its int8 copy (`engine int8`), re-synced after each update.
        self.sampler: Any = self.model
        if config.engine == "int8":
            from ftrl.rollout.quant import quantize_int8

            self.sampler = quantize_int8(self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.states, self.prompts = self._load_states()
        self.cursor = DataCursor(len(self.states), config.seed)
        self.step = 0
        self.samples: list[dict[str, Any]] = []  # the last step's logged states (SAMPLES_FILE)
        self.total_steps = config.steps or len(self.states) // config.batch_states
        if self.total_steps < 1:
            raise ValueError(f"{len(self.states)} usable states is fewer than batch_states={config.batch_states}")

    def _load_states(self) -> tuple[list[Environment], list[list[int]]]:
        """States whose prompt fits `max_prompt_tokens` (verl's filter_overlong_prompts), with their token ids."""
        states, prompts, native = [], [], template_supports_tools(self.tokenizer)
        # no token spans more characters than the longest vocabulary entry: longer prompts cannot fit, and a
        # multi-megabyte row is skipped without tokenizing it
        max_chars = self.config.max_prompt_tokens * max(map(len, self.tokenizer.get_vocab()), default=1)
        for env in read_envs(self.config.data):
            text = render_prompt(self.tokenizer, env, native)
            if len(text) > max_chars:
                continue
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(ids) <= self.config.max_prompt_tokens:
                states.append(env)
                prompts.append(ids)
        if not states:
            raise ValueError(f"{self.config.data}: no state fits max_prompt_tokens={self.config.max_prompt_tokens}")
        return states, prompts

    # ---- resume -------------------------------------------------------------------------------------------
    def resume(self) -> bool:
        """Continue from the newest complete checkpoint in `out`, if any; metrics after it are dropped."""
        checkpoints = list_checkpoints(self.out)
        if not checkpoints:
            return False
        state = load_checkpoint(checkpoints[-1], self.model, self.optimizer)
        self.step = state["step"]
        self.cursor = DataCursor(len(self.states), self.config.seed, state["epoch"], state["position"])
        for name in (METRICS_FILE, SAMPLES_FILE):
            path = self.out / name
            if path.exists():
                rows = [row for _, row in iter_jsonl(path, allow_torn_tail=True) if row["step"] <= self.step]
                write_jsonl_atomic(path, rows)
        self.console.print(f"[dim]resumed from {checkpoints[-1]} (step {self.step})[/dim]")
        return True

    def _checkpoint(self) -> None:
        state = {"step": self.step, "epoch": self.cursor.epoch, "position": self.cursor.position}
        save_checkpoint(self.out, self.model, self.optimizer, state, self.config.keep_checkpoints)

    # ---- one step -----------------------------------------------------------------------------------------
    def train_step(self, score: Scorer) -> dict[str, float]:
        """Sample, score, compute advantages and update once; returns the step's metrics."""
        config, started = self.config, time.perf_counter()
        indices = self.cursor.take(config.states_per_step)
        batch = sample(
            self.sampler,
            self.tokenizer,
            [self.prompts[i] for i in indices],
            n=config.n,
            sampling=config.sampling,
        )
        sampled = time.perf_counter()
        scored = [score(self.states[indices[row // config.n]], text) for row, text in enumerate(batch.texts)]
        timings = {"seconds_sample": sampled - started, "seconds_score": time.perf_counter() - sampled}
        rewards = torch.tensor([reward for reward, _ in scored], dtype=torch.float32)
        calls = torch.tensor([n_calls > 0 for _, n_calls in scored])
        spread = rewards.view(len(indices), config.n)
        best = spread.amax(dim=1)
        differ = best > spread.amin(dim=1)
        solved = differ & (best > 0)
        informative = ranked_groups(differ.tolist(), solved.tolist(), config.prefer_solved)
        lengths = batch.response_mask.sum(dim=1)
        metrics = {
            "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
            "reward_tool_calls": rewards[calls].mean().item() if calls.any() else math.nan,
            "reward_no_call": rewards[~calls].mean().item() if (~calls).any() else math.nan,
            "tool_call_rate": calls.float().mean().item(),
            "response_len": lengths.mean().item(),
            "response_clip_rate": (lengths >= config.max_new_tokens).float().mean().item(),
            "informative_groups": len(informative) / len(indices),
            "solved_groups": solved.float().mean().item(),
            "sampled_turns": float(len(batch)),
        }
        kept = groups_to_train(informative, len(indices), config.batch_states, config.filter_groups)
        drawn, texts, drawn_rewards = indices, batch.texts, rewards.tolist()
        if len(kept) < len(indices):
            rows = [group * config.n + k for group in kept for k in range(config.n)]
            batch, rewards, indices = batch.select(rows), rewards[rows], [indices[group] for group in kept]
        groups = [indices[row // config.n] for row in range(len(batch))]
        advantages = compute_advantages(config.algo, rewards, batch.response_mask, groups, config.gamma)
        if config.log_samples:
            mask = batch.response_mask.bool()
            per_response = [
                advantages[row][mask[row]].mean().item() if mask[row].any() else 0.0 for row in range(len(batch))
            ]
            self.samples = self._sample_rows(drawn, kept, texts, drawn_rewards, per_response)
        metrics = self.update(batch, advantages) | metrics | timings
        metrics["seconds_sync"] = self.sync_sampler()
        metrics["seconds"] = time.perf_counter() - started

        return metrics

    def _sample_rows(
        self,
        drawn: list[int],
        kept: list[int],
        texts: list[str],
        rewards: list[float],
        advantages: list[float],
    ) -> list[dict[str, Any]]:
        """The first `log_samples` drawn states: the state's last messages, every response with its reward, and
        its advantage when its group was trained on (None for groups dynamic sampling dropped)."""
        n, rows = self.config.n, []
        position = {group: index for index, group in enumerate(kept)}
        for group, state in enumerate(drawn[: self.config.log_samples]):
            env = self.states[state]
            trained = position.get(group)
            responses = [
                {
                    "text": texts[group * n + k][:SAMPLE_CHARS],
                    "reward": rewards[group * n + k],
                    "advantage": None if trained is None else round(advantages[trained * n + k], 4),
                }
                for k in range(n)
            ]
            rows.append(
                {
                    "state": state,
                    "episode_id": env.extra.get("episode_id"),
                    "data_source": env.data_source,
                    "messages": [_cut(message) for message in env.messages[-6:]],
                    "unsolved_set": env.unsolved_set,
                    "answer": env.answer,
                    "trained": trained is not None,
                    "responses": responses,
                }
            )
        return rows

    def sync_sampler(self) -> float:
        """Bring the int8 sampler up to the updated fp32 weights (re-quantize); returns the seconds it took."""
        if self.sampler is self.model:
            return 0.0
        from ftrl.rollout.quant import sync_int8

        started = time.perf_counter()
        sync_int8(self.sampler, self.model)
        return time.perf_counter() - started

    def update(self, batch: RolloutBatch, advantages: torch.Tensor) -> dict[str, float]:
        """PPO epochs over contiguous mini-batches of whole groups (verl: shuffle off), micro-batched backward."""
        config = self.config
        mini = config.mini_batch_states * config.n
        spans = [range(start, min(start + mini, len(batch))) for start in range(0, len(batch), mini)]
        on_policy = config.ppo_epochs * len(spans) == 1
        # With a single optimizer step per batch the old policy *is* the current one: reuse its log-probs
        # (ratio 1, same gradient) instead of a separate no-grad pass.
        started = time.perf_counter()
        old = None if on_policy else self._logprobs(self.model, batch)
        reference = self._logprobs(self.reference, batch) if self.reference is not None else None
        if reference is None and config.kl_coef and config.lora:
            with self.model.disable_adapter():
                reference = self._logprobs(self.model, batch)
        passes = time.perf_counter()
        totals: dict[str, float] = {
            "pg_loss": 0.0,
            "kl": 0.0,
            "entropy": 0.0,
            "clip_frac": 0.0,
            "grad_norm": 0.0,
            "logprob_mismatch": 0.0,
        }
        params = [p for p in self.model.parameters() if p.requires_grad]
        updates = 0
        for _ in range(config.ppo_epochs):
            for span in spans:
                self.optimizer.zero_grad(set_to_none=True)
                for micro in _chunks(span, config.micro_batch_size):
                    weight = len(micro) / len(span)
                    parts = self._micro_loss(batch, micro, advantages, old, reference)
                    (parts.pop("loss") * weight).backward()
                    for key, value in parts.items():
                        totals[key] += value * weight
                grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                if torch.isfinite(grad_norm):  # verl skips the step on a non-finite gradient
                    self.optimizer.step()
                totals["grad_norm"] += grad_norm.item()
                updates += 1
        timings = {"seconds_reference": passes - started, "seconds_update": time.perf_counter() - passes}
        return {key: value / updates for key, value in totals.items()} | timings

    def _micro_loss(
        self,
        batch: RolloutBatch,
        rows: list[int],
        advantages: torch.Tensor,
        old: torch.Tensor | None,
        reference: torch.Tensor | None,
    ) -> dict[str, Any]:
        config = self.config
        self.model.train()
        log_prob, entropy, width = self._response_logprobs(self.model, batch, rows, with_entropy=True)
        mask = batch.response_mask[rows, :width]
        old_log_prob = log_prob.detach() if old is None else old[rows, :width]
        pg_loss, clip_frac = policy_loss(
            log_prob,
            old_log_prob,
            advantages[rows, :width],
            mask,
            config.clip_ratio,
            config.clip_ratio_c,
            config.loss_agg_mode,
        )
        assert entropy is not None, "asked with_entropy=True"
        entropy_loss = agg_loss(entropy, mask, config.loss_agg_mode)
        loss = pg_loss - config.entropy_coef * entropy_loss
        # verl's rollout/trainer mismatch: mean |log p_sampler - log p_trainer| per response token; with one update
        # a step (the cpu preset, the demo) it is the engine's difference alone, later updates add their own drift
        mismatch = torch.zeros(())
        if batch.sampler_logprobs is not None:
            gap = (log_prob.detach() - batch.sampler_logprobs[rows, :width]).abs()
            mismatch = (gap * mask).sum() / mask.sum().clamp(min=1)
        kl = torch.zeros(())
        if reference is not None:
            kl = agg_loss(kl_k3(log_prob, reference[rows, :width]), mask, config.loss_agg_mode)
            loss = loss + config.kl_coef * kl
        return {
            "loss": loss,
            "pg_loss": pg_loss.item(),
            "kl": kl.item(),
            "entropy": entropy_loss.item(),
            "clip_frac": clip_frac.item(),
            "logprob_mismatch": mismatch.item(),
        }

    @torch.no_grad()
    def _logprobs(self, model: PreTrainedModel, batch: RolloutBatch) -> torch.Tensor:
        """No-grad log-probs of every response token, padded to the batch's response width."""
        model.eval()
        result = torch.zeros_like(batch.response_mask)
        for rows in _chunks(range(len(batch)), self.config.micro_batch_size):
            log_prob, _, width = self._response_logprobs(model, batch, rows)
            result[rows, :width] = log_prob
        return result

    def _response_logprobs(
        self, model: PreTrainedModel, batch: RolloutBatch, rows: list[int], with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Log-probs (and entropies) of the rows' responses up to the longest one's end; the rows of one prompt
        (`n` consecutive rows) share a single pass over it (`group_logprobs`)."""
        width = int(batch.response_mask[rows].sum(dim=1).max())
        prompt_width = batch.prompt_width
        log_probs: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        for _, group in groupby(rows, key=lambda row: row // self.config.n):
            members = list(group)
            first = members[0]
            prompt = batch.input_ids[first, :prompt_width][batch.attention_mask[first, :prompt_width].bool()]
            responses = batch.input_ids[members, prompt_width : prompt_width + width]
            log_prob, entropy = group_logprobs(model, prompt, responses, self.config.temperature, with_entropy)
            log_probs.append(log_prob)
            if entropy is not None:
                entropies.append(entropy)
        return torch.cat(log_probs), torch.cat(entropies) if with_entropy else None, width

    # ---- the run ------------------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train (resuming when checkpoints exist), logging metrics per step; returns the saved model dir."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        self.resume()
        with (
            ExitStack() as stack,
            make_progress(self.console) as progress,
            MetricsLog(self.out / METRICS_FILE, self.config.report_to, config=self.config.to_dict()) as log,
            JsonlAppender(self.out / SAMPLES_FILE) as samples,
        ):
            score = self.scorer
            if score is None:
                runtime, bind = runtime_scorer(self.config)
                score = bind(stack.enter_context(runtime))
            task = progress.add_task("train steps", total=self.total_steps, completed=self.step)
            while self.step < self.total_steps:
                metrics = self.train_step(score)
                self.step += 1
                row = {key: None if isinstance(v, float) and math.isnan(v) else v for key, v in metrics.items()}
                log.write({"step": self.step, "epoch": self.cursor.epoch, **row})
                for sample in self.samples:
                    samples.write({"step": self.step, **sample})
                progress.update(task, completed=self.step)
                progress.console.print(_summary(self.step, metrics))
                if self.step % self.config.save_every == 0 or self.step == self.total_steps:
                    self._checkpoint()
        return save_hf(self.model, self.tokenizer, self.out / FINAL_MODEL)


def train(config: TrainConfig, scorer: Scorer | None = None, console: Console | None = None) -> Path:
    """Run `ftrl train` with `config`; returns the directory of the final HF model."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    return Trainer(config, scorer, console).run()


def ranked_groups(differ: list[bool], solved: list[bool], prefer_solved: bool) -> list[int]:
    """The groups whose rewards differ, in draw order; with `prefer_solved` those where some response earned a
    positive reward come first. A group whose only spread is 0 against a format penalty rewards any well-formed
    turn, giving up included; one with a success rewards the success."""
    informative = [group for group, flag in enumerate(differ) if flag]
    if not prefer_solved:
        return informative
    return sorted(informative, key=lambda group: not solved[group])


def groups_to_train(informative: list[int], drawn: int, wanted: int, filter_groups: bool) -> list[int]:
    """Which sampled groups the update uses: all of them, or with `filter_groups` the first `wanted` of
    `informative` (groups whose rewards differ, best first), topped up in draw order when too few are (a step
    never trains on nothing)."""
    if not filter_groups:
        return list(range(drawn))
    rest = [group for group in range(drawn) if group not in informative]
    return sorted((informative + rest)[:wanted])


def _cut(message: dict[str, Any]) -> dict[str, Any]:
    """A message with its content cut to `SAMPLE_CHARS` (the start of a long tool output is what a reader needs)."""
    content = message.get("content")
    if isinstance(content, str) and len(content) > SAMPLE_CHARS:
        message = {**message, "content": content[:SAMPLE_CHARS] + " [...]"}
    return message


def _chunks(rows: range, size: int) -> Iterator[list[int]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def _summary(step: int, metrics: dict[str, float]) -> str:
    return (
        f"step {step}: reward {metrics['reward_mean']:+.3f}±{metrics['reward_std']:.3f} "
        f"calls {metrics['tool_call_rate']:.2f} kl {metrics['kl']:.4f} entropy {metrics['entropy']:.3f} "
        f"len {metrics['response_len']:.0f} groups with spread {metrics['informative_groups']:.2f} "
        f"solved {metrics['solved_groups']:.2f} {metrics['seconds']:.1f}s"
    )
