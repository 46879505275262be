"""The policy side of training: load (optionally LoRA-wrapped), sample responses, score tokens, save.

A rollout batch is laid out as verl lays it out: prompts left-padded to a common width P, responses
right-padded to a common width R, and a response mask that covers each response up to and including its first
end-of-turn token. Log-probabilities and entropies use logits divided by the sampling temperature, as verl's
actor and reference workers do, so the PPO ratio and the KL compare the distributions that were sampled from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ftrl.settings import SamplingConfig
from ftrl.train.algos import entropy_from_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_trainable_model(
    path: str | Path,
    *,
    lora: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    gradient_checkpointing: bool = False,
    device: str = "auto",
    dtype: str = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer for training; `device`/`dtype` as `ftrl.models.placement` (auto: fp32 weights,
    on CUDA when present)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftrl.models import placement

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    where, precision = placement(device, dtype, training=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=precision).to(where)
    if lora:
        from peft import LoraConfig, get_peft_model

        # dropout 0 keeps the sampling policy and the trained policy identical (ratio exactly 1 on-policy)
        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules="all-linear")
        model = get_peft_model(model, config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora:
            model.enable_input_require_grads()
    return model, tokenizer


def freeze_bottom(model: Any, layers: int) -> None:  # a transformers causal LM
    """Stop gradients to the input embeddings (tied to the LM head in small models) and the first `layers` decoder
    layers: nothing below layer `layers` then needs a backward pass, and no activation there is kept for one."""
    decoder = model.get_decoder()
    if not 0 <= layers <= len(decoder.layers):
        raise ValueError(f"freeze_layers={layers}, but the model has {len(decoder.layers)} decoder layers")
    model.get_input_embeddings().requires_grad_(False)
    for layer in decoder.layers[:layers]:
        layer.requires_grad_(False)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """The reference policy for the KL term: a frozen copy taken before any update (full fine-tuning only;
    with LoRA the reference is the base model with the adapter disabled, no copy needed)."""
    import copy

    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def end_of_turn_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS and the model's generation EOS ids."""
    ids = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


@dataclass
class RolloutBatch:
    """Sampled responses for a list of prompts, `n` per prompt, in prompt order (rows i*n .. i*n+n-1)."""

    input_ids: torch.Tensor  # (B, P + R)
    attention_mask: torch.Tensor  # (B, P + R)
    response_mask: torch.Tensor  # (B, R) float
    prompt_width: int
    texts: list[str]  # decoded responses without the final end-of-turn token
    sampler_logprobs: torch.Tensor | None = None  # (B, R): each response token's log-prob under the sampling model

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows: list[int]) -> RolloutBatch:
        """The batch of just these rows, in this order."""
        return RolloutBatch(
            self.input_ids[rows],
            self.attention_mask[rows],
            self.response_mask[rows],
            self.prompt_width,
            [self.texts[row] for row in rows],
            None if self.sampler_logprobs is None else self.sampler_logprobs[rows],
        )


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    *,
    n: int,
    sampling: SamplingConfig,
) -> RolloutBatch:
    """Sample `n` responses per prompt (top-k off, as in verl), all rows decoded together; randomness comes from
    torch's global generator (seeded, and restored on resume, by the trainer), not `sampling.seed`.

    Decoding is `ftrl.rollout.kvgen.generate_batch`, the rollout engine's: a prompt is prefilled once and its
    `n` samples reuse its keys/values, where `model.generate(num_return_sequences=n)` would encode it `n` times.
    `model` may be the trained model or its int8 copy (`ftrl.rollout.quant`); the batch keeps the sampled tokens'
    log-probs under it, so the trainer can measure how far the sampler is from the trained fp32 weights.
    """
    from ftrl.rollout.kvgen import generate_batch

    pad = tokenizer.pad_token_id
    eos_ids = end_of_turn_ids(model, tokenizer)
    model.eval()
    rows = [ids for ids in prompt_ids for _ in range(n)]
    sampled: list[list[float]] = []
    outputs = generate_batch(model, rows, set(eos_ids), sampling, max_rows=len(rows), logprobs=sampled)
    width = max(len(ids) for ids in prompt_ids)
    response_width = max(len(out) for out in outputs)
    prompts = torch.tensor([[pad] * (width - len(ids)) + ids for ids in rows])
    prompt_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows])
    responses = torch.tensor([out + [pad] * (response_width - len(out)) for out in outputs])
    # each output runs up to and including its end-of-turn token (verl's eos mask), or to max_new_tokens
    mask = torch.tensor([[1.0] * len(out) + [0.0] * (response_width - len(out)) for out in outputs])
    texts: list[str] = []
    for out in outputs:
        tokens = out[:-1] if out and out[-1] in eos_ids else out
        texts.append(str(tokenizer.decode(tokens, skip_special_tokens=False)))
    attention = torch.cat([prompt_mask, mask.long()], dim=1)
    logprobs = torch.tensor([values + [0.0] * (response_width - len(values)) for values in sampled])
    return RolloutBatch(torch.cat([prompts, responses], dim=1), attention, mask, width, texts, logprobs)


def group_logprobs(
    model: PreTrainedModel,
    prompt: torch.Tensor,
    responses: torch.Tensor,
    temperature: float,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (and entropies) of `responses` (n, W), all sampled from the one `prompt` (P,).

    The same numbers as running the n full sequences (prompt + response) through the model, but the prompt runs
    once and its keys/values are shared by the n rows (an expanded view, so gradients through the prompt add up
    over the rows). Tool-use
    prompts are hundreds to thousands of tokens and responses tens, so this cuts the work of every training
    forward and backward about n-fold. Right padding after a response's end needs no mask: under causal
    attention no real token sees it, and the response mask drops its positions. Inputs go to the model's device
    and the per-token results come back to the batch's (the loss bookkeeping stays where the batch is).
    """
    home, device = responses.device, model.device
    prompt, responses = prompt.to(device), responses.to(device)
    log_probs, entropies = _group_logprobs(model, prompt, responses, temperature, with_entropy)
    return log_probs.to(home), entropies.to(home) if entropies is not None else None


def _group_logprobs(
    model: PreTrainedModel, prompt: torch.Tensor, responses: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from transformers import DynamicCache

    n, width = responses.shape
    if _checkpointing(model) and model.training:
        # checkpointed layers keep no cache: run the full sequences
        ids = torch.cat([prompt.expand(n, -1), responses], dim=1)
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=width + 1).logits[:, :-1]
        return _token_stats(logits, responses, temperature, with_entropy)
    out = model(input_ids=prompt.unsqueeze(0), use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1:].expand(n, -1, -1)  # predicts each response's first token
    if width > 1:
        shared = DynamicCache(
            [
                (layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1))
                for layer in out.past_key_values.layers
            ]
        )
        start = prompt.shape[0]
        rest = model(
            input_ids=responses[:, :-1],
            past_key_values=shared,
            position_ids=torch.arange(start, start + width - 1, device=responses.device).expand(n, -1),
            use_cache=True,
        ).logits
        logits = torch.cat([logits, rest], dim=1)
    return _token_stats(logits, responses, temperature, with_entropy)


def _checkpointing(model: PreTrainedModel) -> bool:
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x; older: is_gradient_checkpointing
    return bool(getattr(model, "is_gradient_checkpointing", False) if flag is None else flag)


def _token_stats(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    logits = logits.float() / temperature
    log_probs = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return log_probs, entropy_from_logits(logits) if with_entropy else None


def save_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | Path) -> Path:
    """A plain HF safetensors directory (LoRA merged into the weights) for `AutoModelForCausalLM.from_pretrained`."""
    out = Path(out)
    merge = getattr(model, "merge_and_unload", None)  # a LoRA (peft) model
    if merge is not None:
        model = merge()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
