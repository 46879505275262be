"""Continuous batched decoding with a prefix KV cache, for multi-turn rollouts (CPU or CUDA: buffers and inputs
live on the model's device).

Tool-use prompts are long (hundreds to thousands of tokens of tool schemas) and on a CPU their prefill costs
more than decoding the reply. `HF generate` re-reads the whole conversation every turn; here each sequence's
keys/values live in its own buffer and are kept after it finishes, so the next turn of a conversation only
prefills what is new (the tool results), and `k` samples of one environment share one prompt prefill.

Rows join and leave the batch at any step (continuous batching): a conversation whose turn ends can run its
tools and come back with its next turn while the others are still decoding. A step is one packed forward of
every row's new tokens (one for a decoding row, the uncached prompt for a joining one), so the weights, read
from memory once per forward, serve all of them. Each row attends to its own buffer (no padding, no copying of
the batch's cache when a row leaves); the projections and MLPs run on all tokens at once.

The per-row attention plugs into transformers' attention dispatch (`AttentionInterface`, registered on first use)
and is switched on around each packed forward through the config attribute every attention layer reads. Models
whose attention does not go through that dispatch, or that attend within a sliding window, would decode wrongly:
`unsupported_reason` says when a model is one of them (`ftrl.rollout.hf` then uses transformers' `generate`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

from ftrl.settings import SamplingConfig

_RAGGED = "ftrl_ragged"
#: `config.model_type`s whose attention layers dispatch through `AttentionInterface` with the standard arguments
#: and have a `layer_idx` (checked in their transformers modeling code); others may bypass `_ragged_attention`.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass
class _Sequence:
    """Tokens whose keys/values fill the start of `buffer` (`[layers, 2, kv_heads, capacity, head_dim]`)."""

    tokens: list[int]
    buffer: torch.Tensor


@dataclass
class PrefixCache:
    """Keys/values of finished sequences by key, looked up by the longest token prefix they share with a prompt."""

    entries: dict[Hashable, _Sequence] = field(default_factory=dict)

    def lookup(self, tokens: Sequence[int]) -> tuple[int, _Sequence | None]:
        """Length of the longest cached prefix of `tokens` and the sequence holding it."""
        return _longest_prefix(self.entries.values(), tokens)

    def keep(self, keys: set[Hashable]) -> None:
        """Drop every entry but `keys` (conversations that ended or moved on)."""
        self.entries = {k: v for k, v in self.entries.items() if k in keys}

    def release(self, key: Hashable) -> None:
        self.entries.pop(key, None)


def _longest_prefix(sequences, tokens: Sequence[int]) -> tuple[int, _Sequence | None]:
    best, best_sequence = 0, None
    for sequence in sequences:
        n = _common_prefix(sequence.tokens, tokens)
        if n > best:
            best, best_sequence = n, sequence
    return best, best_sequence


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = (torch.tensor(a[:n]) != torch.tensor(b[:n])).nonzero()
    return int(differ[0]) if len(differ) else n


@dataclass
class _Row:
    key: Hashable
    sequence: _Sequence
    logits: torch.Tensor | None = None  # next-token logits, `[vocab]`, once its last token has run
    output: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # of each output token, with `Decoder.record_logprobs`


@dataclass
class _Segment:
    """New tokens of one row in a packed forward: they go to `row`'s buffer right after its filled part."""

    row: _Row
    tokens: list[int]

    @property
    def start(self) -> int:
        """Position of the first new token (the row's tokens are extended only after the forward)."""
        return len(self.row.sequence.tokens)


class Decoder:
    """A decode batch that requests join (`submit`) and leave (`step` returns them) at any step.

    Every step is one packed forward over all rows: one new token for each decoding row and the whole (uncached
    part of the) prompt of each row joining, so the weights are read once per step for all of them. At most
    `max_rows` rows are in the batch and prompts join while a step has fewer than `max_step_tokens` tokens (one
    always may); later submissions wait. With a `cache`, every finished sequence is kept under its key for the
    next turn's prompt to reuse. With `record_logprobs`, the log-probability of every sampled token (under the
    temperature-scaled distribution, before top-p, as the trainer computes it) is kept in `logprobs` by key.
    """

    def __init__(
        self,
        model: Any,  # a transformers causal LM (typed loosely: its config and attributes are dynamic)
        stop_ids: set[int],
        sampling: SamplingConfig,
        cache: PrefixCache | None = None,
        generator: torch.Generator | None = None,
        max_rows: int = 16,
        max_step_tokens: int = 4096,
        record_logprobs: bool = False,
    ):
        self.model, self.stop_ids, self.sampling = model, stop_ids, sampling
        self.logprobs: dict[Hashable, list[float]] | None = {} if record_logprobs else None
        self.cache, self.generator, self.max_rows = cache, generator, max_rows
        self.max_step_tokens = max_step_tokens
        _register_attention()
        self.rows: list[_Row] = []
        self.pending: deque[tuple[Hashable, list[int]]] = deque()
        config = model.config
        self._shape = (
            config.num_hidden_layers,
            2,
            config.num_key_value_heads,
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        )

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.pending)

    def submit(self, key: Hashable, prompt: Sequence[int]) -> None:
        """Queue a prompt; its new tokens come back from a later `step` under `key`."""
        if not prompt:
            raise ValueError(f"empty prompt for {key!r}")
        self.pending.append((key, list(prompt)))

    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, list[int]]]:
        """Sample one token for every row, then run one packed forward for the rows still decoding and the
        prompts that join; returns the rows that finished (their tokens, stop token included unless cut at
        `max_new_tokens`)."""
        finished, segments = [], []
        if self.rows:
            logits = [row.logits for row in self.rows if row.logits is not None]
            assert len(logits) == len(self.rows), "every decoding row has run its last token"
            tokens, chosen = sample_next(logits, self.sampling, self.generator, self.logprobs is not None)
            if chosen is not None:
                for row, value in zip(self.rows, chosen, strict=True):
                    row.logprobs.append(value)
            alive = []
            for row, token in zip(self.rows, tokens, strict=False):
                row.output.append(token)
                if token in self.stop_ids or len(row.output) == self.sampling.max_new_tokens:
                    finished.append((row.key, row.output))
                    if self.logprobs is not None:
                        self.logprobs[row.key] = row.logprobs
                    if self.cache is not None:
                        self.cache.entries[row.key] = row.sequence  # the prompt and the output but its last token
                else:
                    alive.append(row)
                    segments.append(_Segment(row, [token]))
            self.rows = alive
        segments += self._admit(budget=self.max_step_tokens - len(segments))
        if segments:
            self._forward(segments)
        return finished

    def _admit(self, budget: int) -> list[_Segment]:
        """Rows for waiting prompts while `budget` tokens last, their buffers holding the longest cached prefix;
        a prompt that shares most of itself with another one joining now waits a step to reuse that one's
        keys/values."""
        joining: list[_Segment] = []
        deferred: deque[tuple[Hashable, list[int]]] = deque()
        while self.pending and len(self.rows) < self.max_rows and (budget > 0 or not self.rows):
            key, prompt = self.pending.popleft()
            sources = [*(self.cache.entries.values() if self.cache else []), *(row.sequence for row in self.rows)]
            reused, source = _longest_prefix(sources, prompt)
            shared = max((_common_prefix(j.row.sequence.tokens + j.tokens, prompt) for j in joining), default=0)
            if shared >= len(prompt) // 2 and shared > reused:
                deferred.append((key, prompt))
                continue
            reused = min(reused, len(prompt) - 1)  # at least one token must run to give the next-token logits
            if reused < len(prompt) // 2:
                # a short shared prefix (a common system header) is not worth it: attending to a cache takes SDPA
                # off its fused causal kernel, which costs more on a long new segment than recomputing the prefix
                reused, source = 0, None
            capacity = len(prompt) + self.sampling.max_new_tokens
            buffer = torch.empty(
                *self._shape[:3], capacity, self._shape[3], dtype=self.model.dtype, device=self.model.device
            )
            if source is not None:
                buffer[:, :, :, :reused] = source.buffer[:, :, :, :reused]
            row = _Row(key, _Sequence(prompt[:reused], buffer))
            self.rows.append(row)
            joining.append(_Segment(row, prompt[reused:]))
            budget -= len(prompt) - reused
        self.pending.extendleft(reversed(deferred))
        return joining

    def _forward(self, segments: list[_Segment]) -> None:
        """All segments as one sequence through the model; `_ragged_attention` keeps each to its own row."""
        device = self.model.device
        ends = torch.tensor([len(s.tokens) for s in segments], device=device).cumsum(0)
        with _attention(self.model, _RAGGED):
            out = self.model(
                input_ids=torch.tensor([[t for s in segments for t in s.tokens]], device=device),
                position_ids=torch.cat(
                    [torch.arange(s.start, s.start + len(s.tokens), device=device) for s in segments]
                )[None],
                use_cache=False,
                logits_to_keep=ends - 1,
                ragged_segments=segments,
            )
        for segment, logits in zip(segments, out.logits[0].float(), strict=False):
            segment.row.sequence.tokens.extend(segment.tokens)
            segment.row.logits = logits


@torch.inference_mode()
def generate_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    stop_ids: set[int],
    sampling: SamplingConfig,
    cache: PrefixCache | None = None,
    generator: torch.Generator | None = None,
    max_rows: int = 16,
    logprobs: list[list[float]] | None = None,
) -> list[list[int]]:
    """New tokens for every prompt (ending with its stop token unless cut at `max_new_tokens`).

    With a `cache`, the finished sequences replace the previous call's: a later call with the grown conversations
    (in the same order) prefills only what each one added. A `logprobs` list receives each output's per-token
    log-probabilities under `model` (see `Decoder`).
    """
    decoder = Decoder(model, stop_ids, sampling, cache, generator, max_rows, record_logprobs=logprobs is not None)
    for index, prompt in enumerate(prompts):
        decoder.submit(index, prompt)
    outputs: dict[Hashable, list[int]] = {}
    while decoder.busy:
        outputs.update(decoder.step())
    if cache is not None:
        cache.keep(set(range(len(prompts))))
    if logprobs is not None and decoder.logprobs is not None:
        logprobs[:] = [decoder.logprobs[index] for index in range(len(prompts))]
    return [outputs[index] for index in range(len(prompts))]


def _ragged_attention(
    module: Any,  # the calling attention layer (its `layer_idx` names the layer's buffer)
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    ragged_segments: list[_Segment] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of each packed segment over its own row's buffer (the segment's keys/values are written there
    first). A one-token segment attends with its key/value head's query group as one (`[1, kv_heads, group,
    head_dim]`), so keys are never repeated per query head; a prompt segment attends causally."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if ragged_segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    _, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    output = query.new_empty(query.shape[2], heads, dim)
    offset = 0
    for segment in ragged_segments:
        n, start = len(segment.tokens), segment.start
        end = start + n
        layer = segment.row.sequence.buffer[module.layer_idx]
        layer[0, :, start:end] = key[0, :, offset : offset + n]
        layer[1, :, start:end] = value[0, :, offset : offset + n]
        keys, values = layer[0, :, :end][None], layer[1, :, :end][None]
        if n == 1:
            grouped = query[:, :, offset].reshape(1, kv_heads, group, dim)
            attended = torch.nn.functional.scaled_dot_product_attention(grouped, keys, values, scale=scaling)
            output[offset] = attended.reshape(heads, dim)
        else:
            keys, values = repeat_kv(keys, group), repeat_kv(values, group)
            mask = None
            if start:  # causal with an offset: SDPA's own causal mask is aligned to the top left
                rows, columns = torch.arange(start, end, device=query.device), torch.arange(end, device=query.device)
                mask = rows[:, None] >= columns[None, :]
            attended = torch.nn.functional.scaled_dot_product_attention(
                query[:, :, offset : offset + n], keys, values, attn_mask=mask, is_causal=not start, scale=scaling
            )
            output[offset : offset + n] = attended[0].transpose(0, 1)
        offset += n
    return output.unsqueeze(0), None  # `[batch 1, tokens, heads, head_dim]`


def _no_mask(*args, **kwargs) -> None:
    """Packed forwards need no mask tensor: `_ragged_attention` bounds every segment itself."""
    return None


@cache
def _register_attention() -> None:
    """Make `_ragged_attention` an attention implementation transformers can dispatch to, once, on first use (so
    importing this module changes nothing in transformers). Raises ImportError when a transformers internal that
    kvgen uses is missing."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward  # noqa: F401 - per layer
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(_RAGGED, _ragged_attention)
    AttentionMaskInterface.register(_RAGGED, _no_mask)


def unsupported_reason(model: Any) -> str | None:
    """Why `Decoder` cannot decode `model` exactly, or None when it can: the transformers internals it plugs into
    must exist, the architecture must be one whose attention dispatches through them, with no sliding window."""
    config = model.config
    try:
        _register_attention()
    except ImportError as error:
        return f"this transformers lacks the attention interfaces kvgen plugs into ({error})"
    if not hasattr(config, "_attn_implementation"):
        return "this transformers' model config has no `_attn_implementation` for kvgen to switch"
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} is not one kvgen supports ({', '.join(SUPPORTED_MODEL_TYPES)})"
    if getattr(config, "sliding_window", None) is not None:
        return f"the model attends within a sliding window ({config.sliding_window} tokens), which kvgen ignores"
    return None


@contextmanager
def _attention(model: Any, implementation: str):
    """Run the model with another attention function: transformers has no public per-forward switch, so this sets
    the config attribute every attention layer reads (`unsupported_reason` checks it exists) and restores it."""
    previous = model.config._attn_implementation
    model.config._attn_implementation = implementation
    try:
        yield
    finally:
        model.config._attn_implementation = previous


def sample_next(
    logits: list[torch.Tensor], sampling: SamplingConfig, generator: torch.Generator | None, record: bool
) -> tuple[list[int], list[float] | None]:
    """One token for each row from its next-token logits and, with `record`, each token's log-probability under
    the temperature-scaled distribution (before top-p, as the trainer computes it)."""
    stacked = torch.stack(logits)
    tokens = _sample(stacked, sampling, generator)
    chosen = None
    if record:
        scaled = stacked / sampling.temperature if sampling.temperature > 0 else stacked
        chosen = torch.log_softmax(scaled, dim=-1).gather(1, tokens[:, None])[:, 0].tolist()
    return tokens.tolist(), chosen


def _sample(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > sampling.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
