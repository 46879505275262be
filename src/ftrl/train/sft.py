"""`ftrl sft`: a supervised warm start on the gold trajectories of procedural environments.

Small models rarely emit a well-formed tool call, so RL has no signal to amplify; a short SFT pass on gold
trajectories fixes the format first. A trajectory is the environment's gold calls (`ftrl.env.gold.gold_turns` in
waves: calls whose sub-questions do not depend on each other share a turn, as parallel calls do)
with the real tool outputs from executing them in the runtime, then the gold final answer. Turns are rendered
exactly as the policy sees and writes them (the training prompt, hermes `<tool_call>` text) and the loss covers
assistant tokens only.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from ftrl.env import Environment, gold_turns, read_envs
from ftrl.formats import render_hermes
from ftrl.progress import make_progress
from ftrl.runtime.protocol import ToolRunner
from ftrl.trackers import MetricsLog
from ftrl.train.actor import freeze_bottom, load_trainable_model, save_hf
from ftrl.train.config import SFTConfig
from ftrl.train.trainer import FINAL_MODEL, METRICS_FILE, prompt_messages

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100


def gold_trajectory(env: Environment, runtime: ToolRunner) -> list[dict[str, Any]]:
    """Assistant turns with tool calls, the tool messages their execution returns, and the final answer."""
    messages: list[dict[str, Any]] = []
    with runtime.episode(env.codes) as episode:
        for calls in gold_turns(env, parallel=True):
            outputs = episode.call_many([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
            for call, output in zip(calls, outputs, strict=False):
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    messages.append({"role": "assistant", "content": env.answer})
    return messages


def tokenize_trajectory(
    tokenizer: PreTrainedTokenizerBase, env: Environment, trajectory: list[dict[str, Any]]
) -> tuple[list[int], list[int]]:
    """Token ids and labels (IGNORE outside assistant turns) of the rendered conversation."""
    folded = prompt_messages(Environment(**{**env.__dict__, "messages": env.messages + trajectory}))
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for k, message in enumerate(folded):
        if message["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(folded[:k], add_generation_prompt=True, tokenize=False)
        turn = {
            "role": "assistant",
            "content": render_hermes(message) if message.get("tool_calls") else message["content"],
        }
        full = str(tokenizer.apply_chat_template([*folded[:k], turn], tokenize=False))
        context = tokenizer(prefix[len(done) :], add_special_tokens=False).input_ids
        answer = tokenizer(full[len(prefix) :], add_special_tokens=False).input_ids
        ids += context + answer
        labels += [IGNORE] * len(context) + answer
        done = full
    return ids, labels


def assistant_loss(model: Any, ids: list[int], labels: list[int]) -> torch.Tensor:  # a transformers causal LM
    """Mean next-token cross-entropy over the labelled (assistant) tokens.

    Only the positions that predict a labelled token go through the LM head (`logits_to_keep` as indices):
    assistant tokens are a small part of a tool-use conversation, and the 49k-word head is a large part of the
    compute of a small model. Equal to the model's own `labels=` loss.
    """
    targets = torch.tensor(labels[1:], device=model.device)
    positions = (targets != IGNORE).nonzero().squeeze(1)
    logits = model(input_ids=torch.tensor([ids], device=model.device), logits_to_keep=positions).logits[0]
    return torch.nn.functional.cross_entropy(logits.float(), targets[positions])


def sft(config: SFTConfig, console: Console | None = None) -> Path:
    """Fine-tune on gold trajectories; returns the saved HF model directory."""
    from ftrl.models import resolve_model
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    console = console or Console(stderr=True)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    model, tokenizer = load_trainable_model(
        resolve_model(config.model), lora=config.lora, device=config.placement.device, dtype=config.placement.dtype
    )
    if config.freeze_layers:
        freeze_bottom(model, config.freeze_layers)
    envs = [env for env in read_envs(config.envs) if env.gold_calls and not env.domain]
    with ToolRuntime(RuntimeConfig()) as runtime:
        examples = [tokenize_trajectory(tokenizer, env, gold_trajectory(env, runtime)) for env in envs]
    examples = [example for example in examples if len(example[0]) <= config.max_tokens]
    if not examples:
        raise ValueError(f"{config.envs}: no environment with gold calls fits max_tokens={config.max_tokens}")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    steps_per_epoch = -(-len(examples) // config.batch_size)
    model.train()
    with (
        make_progress(console) as progress,
        MetricsLog(out / METRICS_FILE, config.report_to, config=config.to_dict()) as log,
    ):
        task = progress.add_task("sft steps", total=config.epochs * steps_per_epoch)
        step = 0
        for epoch in range(config.epochs):
            order = list(range(len(examples)))
            random.Random(config.seed + epoch).shuffle(order)
            for start in range(0, len(order), config.batch_size):
                started, batch = time.perf_counter(), order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for index in batch:
                    loss = assistant_loss(model, *examples[index]) / len(batch)
                    loss.backward()
                    total += loss.item()
                optimizer.step()
                step += 1
                log.write({"step": step, "epoch": epoch, "loss": total, "seconds": time.perf_counter() - started})
                progress.update(task, completed=step)
    console.print(f"[dim]{len(examples)} trajectories, {step} steps, last loss {total:.4f}[/dim]")
    return save_hf(model, tokenizer, out / FINAL_MODEL)
