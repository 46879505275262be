"""A llama.cpp generation engine, measured against kvgen fp32 (issue 24): kept as an experiment, not an engine.

The candidate: the model's current weights written as a Q8_0 GGUF (llama.cpp's converter layout: q/k permuted to
the interleaved rotary layout; blocks of 32 weights with an fp16 scale), loaded through llama-cpp-python's C API,
and decoded with kvgen's contract (continuous batching, one sequence slot per conversation kept between turns,
k samples of a prompt prefilled once and copied with `llama_memory_seq_cp`, kvgen's own sampling). A weight sync
is "write a GGUF and reload it".

Why it is not in `ftrl.rollout`: on this 2-core EPYC, idle, it was not faster than kvgen fp32 where the demo
spends its time (benchmarks/RESULTS.md, "Generation at int8", the llama.cpp table): prefill of real tool-use prompts
at 0.74x kvgen's tokens/s, a decode step of 48 rows 1.40x faster over 128-token contexts but 0.92x over 1024-token
ones (llama.cpp's CPU attention over per-conversation KV streams grows with context faster than kvgen's grouped
SDPA), one RL step's sampling at 0.89x. It does stay close to fp32 (Q8_0 greedy continuations of 4 tool-use
prompts equal kvgen's; not exact: a short chat reply left fp32's after 7 tokens), so it is the starting point
where llama.cpp is faster (more cores, a GPU backend).

    # llama-cpp-python 0.3.36 compiled with VNNI (3.6 min here): the command in bench_llamacpp.py
    python benchmarks/bench_llamacpp.py [--model runs/demo/warm_start/model] [--envs runs/demo/envs/test.jsonl]
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ftrl.rollout.kvgen import _common_prefix, sample_next
from ftrl.settings import SamplingConfig

#: Weight types a GGUF can be written in: q8_0 (the engine's default) and f32 (exact).
WEIGHT_TYPES = ("q8_0", "f32")

_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_unsupported_reason(model: Any) -> str | None:
    """Why `write_gguf` cannot write `model`, or None when it can (Llama-architecture models without biases or
    rope scaling, whose rows split into Q8_0 blocks)."""
    config = model.config
    if getattr(config, "model_type", None) not in ("llama", "mistral"):
        return f"model type {getattr(config, 'model_type', None)!r} is not one the llamacpp engine writes (llama)"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "the model has attention or MLP biases, which the llamacpp engine does not write"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rope type {rope.get('rope_type')!r} is not one the llamacpp engine writes (default)"
    if getattr(config, "sliding_window", None) is not None:
        return "the model attends within a sliding window, which the llamacpp engine does not write"
    if config.hidden_size % 32 or config.intermediate_size % 32:
        return "the model's hidden or intermediate size is not a multiple of 32 (Q8_0 blocks)"
    return None


def _permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' rotate-half rotary layout to llama.cpp's interleaved one (per head: the two halves of each
    head's rows interleaved)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _q8_0(weight: torch.Tensor) -> np.ndarray:
    """Q8_0 bytes of a `[rows, columns]` matrix: per block of 32 columns an fp16 scale max|w|/127, then 32 int8s
    (ggml's `quantize_row_q8_0_ref`, in torch: ~10x faster than gguf's numpy quantizer)."""
    rows, columns = weight.shape
    blocks = weight.float().reshape(rows, columns // 32, 32)
    scale = blocks.abs().amax(dim=-1, keepdim=True) / 127.0
    inverse = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    quants = torch.round(blocks * inverse).to(torch.int8)
    half = scale.to(torch.float16).view(torch.uint8).reshape(rows, columns // 32, 2)
    packed = torch.cat([half, quants.view(torch.uint8)], dim=-1)
    return packed.reshape(rows, columns // 32 * 34).numpy()


def _tokenizer_fields(writer: Any, tokenizer: Any) -> None:
    """Vocabulary, merges and special ids of a byte-level BPE tokenizer (what llama.cpp needs to load)."""
    import gguf

    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for text, index in vocab.items():
        tokens[index] = text
    special = set(getattr(tokenizer, "all_special_ids", []))
    added = {index for index in getattr(tokenizer, "added_tokens_decoder", {})}
    types = [
        gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL
        for i in range(size)
    ]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"] if hasattr(tokenizer, "backend_tokenizer") else {}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if merges:
        writer.add_token_merges(merges)
    for name in ("bos", "eos", "unk", "pad"):
        index = getattr(tokenizer, f"{name}_token_id", None)
        if index is not None:
            getattr(writer, f"add_{name}_token_id")(index)


@torch.no_grad()
def write_gguf(model: Any, tokenizer: Any, path: Path, weight_type: str = "q8_0") -> Path:
    """Write `model`'s current weights (any device, any dtype) to `path` as a llama-architecture GGUF."""
    import gguf

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"unknown GGUF weight type {weight_type!r}; known: {', '.join(WEIGHT_TYPES)}")
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(reason)
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if weight_type == "q8_0" else gguf.LlamaFileType.ALL_F32)
    _tokenizer_fields(writer, tokenizer)

    def add(name: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().float().cpu().contiguous()
        if tensor.ndim == 2 and weight_type == "q8_0":
            writer.add_tensor(name, _q8_0(tensor), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, tensor.numpy())

    state = model.state_dict()
    add("token_embd.weight", state["model.embed_tokens.weight"])
    add("output_norm.weight", state["model.norm.weight"])
    if not getattr(config, "tie_word_embeddings", False):
        add("output.weight", state["lm_head.weight"])
    for layer in range(config.num_hidden_layers):
        for source, target in _LAYER_TENSORS.items():
            weight = state[f"model.layers.{layer}.{source}.weight"]
            if source == "self_attn.q_proj":
                weight = _permute(weight, config.num_attention_heads)
            elif source == "self_attn.k_proj":
                weight = _permute(weight, config.num_key_value_heads)
            add(f"blk.{layer}.{target}.weight", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


#: llama.cpp's most sequences a context holds (`LLAMA_MAX_SEQ`).
MAX_SLOTS = 256
#: Shortest shared prefix worth copying a slot for (below it, prefilling the tokens is as cheap).
MIN_REUSE = 16


def unsupported_reason(model: Any) -> str | None:
    """Why the llamacpp engine cannot decode `model`, or None: llama-cpp-python must import and the model must
    be one `write_gguf` writes, on a CPU."""
    try:
        _library()
    except ImportError as error:
        return f"llama-cpp-python is not installed ({error}); the command is in bench_llamacpp.py"
    if next(model.parameters()).device.type != "cpu":
        return "the llamacpp engine runs on a CPU"
    return gguf_unsupported_reason(model)


@cache
def _library() -> Any:
    """The llama_cpp module, its logging silenced once (it prints every tensor it loads)."""
    import llama_cpp

    callback = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p())
    _library.callback = callback  # type: ignore[attr-defined]  # kept alive: llama.cpp holds the pointer
    llama_cpp.llama_backend_init()
    return llama_cpp


@dataclass
class _Slot:
    """One llama.cpp sequence: `tokens` have their keys/values in it; `key` is the conversation it is kept for
    (None: free), `active` while a row decodes in it."""

    index: int
    tokens: list[int] = field(default_factory=list)
    key: Hashable | None = None
    active: bool = False
    used: int = 0  # when it was last taken or kept (least recently used is evicted first)


class LlamaCppEngine:
    """A llama.cpp model and context over a GGUF of `model`'s weights; also the prefix cache of its slots.

    The attention settings measured in RESULTS.md: `kv_unified` (one KV buffer for all slots, shared prefixes held
    once instead of copied), `flash_attn` (llama.cpp's `flash_attn_type`: -1 auto, 0 off, 1 on) and `kv_type` (a
    ggml type number for keys and values: 0 F32, 1 F16, 8 Q8_0; None keeps llama.cpp's F16).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        weight_type: str = "q8_0",
        slots: int = 64,
        slot_tokens: int = 2048,
        threads: int | None = None,
        max_step_tokens: int = 4096,
        kv_unified: bool = False,
        flash_attn: int = -1,
        kv_type: int | None = None,
    ):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(reason)
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be 1..{MAX_SLOTS}, not {slots}")
        self.lib = _library()
        self.tokenizer, self.weight_type = tokenizer, weight_type
        self.vocab = model.config.vocab_size
        self.slot_count, self.slot_tokens, self.max_step_tokens = slots, slot_tokens, max_step_tokens
        self.kv_unified, self.flash_attn, self.kv_type = kv_unified, flash_attn, kv_type
        self.threads = threads or torch.get_num_threads()
        self._folder = tempfile.TemporaryDirectory(prefix="ftrl-gguf-")
        self._model: Any = None
        self._context: Any = None
        self._batch: Any = None
        self._clock = 0
        self.sync(model)

    # -- weights ------------------------------------------------------------------------------------------------
    def sync(self, model: Any) -> None:
        """Load `model`'s current weights: write a GGUF and reload it (every kept slot is dropped)."""
        path = Path(self._folder.name) / "model.gguf"
        write_gguf(model, self.tokenizer, path, self.weight_type)
        self._free()
        params = self.lib.llama_model_default_params()
        self._model = self.lib.llama_model_load_from_file(str(path).encode(), params)
        os.unlink(path)  # mapped or read: the file is no longer needed
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load the GGUF written from the model ({path})")
        self._new_context()

    def _new_context(self) -> None:
        if self._context:
            self.lib.llama_free(self._context)
        params = self.lib.llama_context_default_params()
        params.n_seq_max = self.slot_count
        params.n_ctx = self.slot_count * self.slot_tokens
        params.n_batch = self.max_step_tokens
        params.n_ubatch = min(512, self.max_step_tokens)
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = self.kv_unified
        params.flash_attn_type = self.flash_attn
        if self.kv_type is not None:
            params.type_k = params.type_v = self.kv_type
        params.no_perf = True
        self._context = self.lib.llama_init_from_model(self._model, params)
        if not self._context:
            raise RuntimeError(f"llama.cpp could not make a context of {self.slot_count} x {self.slot_tokens} tokens")
        self._memory = self.lib.llama_get_memory(self._context)
        if self._batch is None:
            self._batch = self.lib.llama_batch_init(self.max_step_tokens, 0, 1)
        self.slots = [_Slot(index) for index in range(self.slot_count)]

    def _free(self) -> None:
        if self._context:
            self.lib.llama_free(self._context)
            self._context = None
        if self._model:
            self.lib.llama_model_free(self._model)
            self._model = None

    def close(self) -> None:
        self._free()
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self._batch = None
        self._folder.cleanup()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    # -- the cache of slots (kvgen's `PrefixCache` interface) ------------------------------------------------
    def keep(self, keys: set[Hashable]) -> None:
        """Free every kept slot but those of `keys`."""
        for slot in self.slots:
            if not slot.active and slot.key is not None and slot.key not in keys:
                self._clear(slot)

    def release(self, key: Hashable) -> None:
        for slot in self.slots:
            if not slot.active and slot.key == key:
                self._clear(slot)

    def _clear(self, slot: _Slot) -> None:
        self.lib.llama_memory_seq_rm(self._memory, slot.index, -1, -1)
        slot.tokens, slot.key = [], None

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def take(self, key: Hashable, prompt: Sequence[int]) -> tuple[_Slot, int] | None:
        """A slot for `key`'s `prompt`, holding the longest prefix of it found in any slot, and that prefix's
        length; None when every slot is busy decoding. `key`'s own kept slot is taken over; another slot's
        prefix is copied into a free (or the least recently used kept) slot."""
        best, source = 0, None
        for slot in self.slots:
            if slot.tokens:
                n = _common_prefix(slot.tokens, prompt)
                if n > best or (n == best and n and slot.key == key and not slot.active):
                    best, source = n, slot
        best = min(best, len(prompt) - 1)  # one token at least runs, to give the next-token logits
        if best < MIN_REUSE:
            best, source = 0, None
        own = next((s for s in self.slots if not s.active and s.key == key), None)
        if source is not None and source is own:
            target = own
        else:
            idle = [s for s in self.slots if not s.active and s is not source]
            if not idle:
                return None
            free = [s for s in idle if s.key is None]
            target = own if own is not None else free[0] if free else min(idle, key=lambda s: s.used)
            self._clear(target)
            if source is not None:
                # one unified buffer shares the prefix's cells; across KV streams llama.cpp copies only whole
                # sequences, and the tail past `best` goes just below
                self.lib.llama_memory_seq_cp(
                    self._memory, source.index, target.index, *((0, best) if self.kv_unified else (-1, -1))
                )
        self.lib.llama_memory_seq_rm(self._memory, target.index, best, -1)
        target.tokens = list(prompt[:best])
        target.key, target.active, target.used = key, True, self._tick()
        return target, best

    def finish(self, slot: _Slot, keep: bool) -> None:
        """A row in `slot` ended: keep its keys/values under its key for the next turn, or free it."""
        slot.active, slot.used = False, self._tick()
        if not keep:
            self._clear(slot)

    # -- the forward ----------------------------------------------------------------------------------------
    def forward(self, segments: list[tuple[_Slot, list[int]]]) -> torch.Tensor:
        """Run each slot's new tokens (after its filled part) in one `llama_decode`; the next-token logits of
        every segment, `[segments, vocab]` fp32."""
        batch, count = self._batch, 0
        for slot, tokens in segments:
            start = len(slot.tokens)
            for offset, token in enumerate(tokens):
                batch.token[count] = token
                batch.pos[count] = start + offset
                batch.n_seq_id[count] = 1
                batch.seq_id[count][0] = slot.index
                batch.logits[count] = offset == len(tokens) - 1
                count += 1
        batch.n_tokens = count
        status = self.lib.llama_decode(self._context, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} ({count} tokens)")
        pointer = self.lib.llama_get_logits(self._context)
        logits = np.ctypeslib.as_array(pointer, shape=(len(segments), self.vocab))
        for slot, tokens in segments:
            slot.tokens.extend(tokens)
        return torch.from_numpy(logits.copy())

    def fits(self, tokens: int) -> bool:
        return tokens <= self.slot_tokens

    def grow(self, tokens: int) -> None:
        """Rebuild the context with slots of at least `tokens` tokens (doubling); every slot starts empty."""
        while self.slot_tokens < tokens:
            self.slot_tokens *= 2
        self._new_context()


@dataclass
class _Row:
    key: Hashable
    slot: _Slot
    prompt: list[int]
    logits: torch.Tensor | None = None
    output: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class LlamaCppDecoder:
    """kvgen's `Decoder` (same interface and sampling) over a `LlamaCppEngine`."""

    def __init__(
        self,
        engine: LlamaCppEngine,
        stop_ids: set[int],
        sampling: SamplingConfig,
        keep: bool = True,
        generator: torch.Generator | None = None,
        max_rows: int = 16,
        record_logprobs: bool = False,
    ):
        self.engine, self.stop_ids, self.sampling, self.keep = engine, stop_ids, sampling, keep
        self.generator, self.max_rows = generator, min(max_rows, engine.slot_count)
        self.logprobs: dict[Hashable, list[float]] | None = {} if record_logprobs else None
        self.rows: list[_Row] = []
        self.pending: deque[tuple[Hashable, list[int]]] = deque()

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.pending)

    def submit(self, key: Hashable, prompt: Sequence[int]) -> None:
        if not prompt:
            raise ValueError(f"empty prompt for {key!r}")
        self.pending.append((key, list(prompt)))

    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, list[int]]]:
        finished: list[tuple[Hashable, list[int]]] = []
        segments: list[tuple[_Row, list[int]]] = []
        if self.rows:
            logits = [row.logits for row in self.rows if row.logits is not None]
            tokens, chosen = sample_next(logits, self.sampling, self.generator, self.logprobs is not None)
            if chosen is not None:
                for row, value in zip(self.rows, chosen, strict=True):
                    row.logprobs.append(value)
            alive = []
            for row, token in zip(self.rows, tokens, strict=True):
                row.output.append(token)
                if token in self.stop_ids or len(row.output) == self.sampling.max_new_tokens:
                    finished.append((row.key, row.output))
                    if self.logprobs is not None:
                        self.logprobs[row.key] = row.logprobs
                    self.engine.finish(row.slot, self.keep)
                else:
                    alive.append(row)
                    segments.append((row, [token]))
            self.rows = alive
        segments += self._admit(self.engine.max_step_tokens - len(segments))
        if segments:
            logits = self.engine.forward([(row.slot, tokens) for row, tokens in segments])
            for (row, _), row_logits in zip(segments, logits, strict=True):
                row.logits = row_logits
        return finished

    def _admit(self, budget: int) -> list[tuple[_Row, list[int]]]:
        """Rows for waiting prompts while `budget` tokens and slots last; a prompt that shares at least half of
        itself with one joining now waits a step to copy that one's keys/values instead of recomputing them."""
        joining: list[tuple[_Row, list[int]]] = []
        deferred: deque[tuple[Hashable, list[int]]] = deque()
        while self.pending and len(self.rows) < self.max_rows:
            key, prompt = self.pending[0]
            need = len(prompt) + self.sampling.max_new_tokens
            if not self.engine.fits(need):
                if self.rows or joining:
                    break  # rebuilt once the rows in flight are done
                self.engine.grow(need)
            shared = max((_common_prefix(row.prompt, prompt) for row, _ in joining), default=0)
            if shared >= max(len(prompt) // 2, MIN_REUSE):
                deferred.append(self.pending.popleft())
                continue
            if budget < len(prompt) and (self.rows or joining):
                break
            taken = self.engine.take(key, prompt)
            if taken is None:
                break
            self.pending.popleft()
            slot, reused = taken
            row = _Row(key, slot, prompt)
            self.rows.append(row)
            joining.append((row, prompt[reused:]))
            budget -= len(prompt) - reused
        self.pending.extendleft(reversed(deferred))
        return joining


@torch.inference_mode()
def generate_batch(
    engine: LlamaCppEngine,
    prompts: Sequence[Sequence[int]],
    stop_ids: set[int],
    sampling: SamplingConfig,
    keep: bool = True,
    generator: torch.Generator | None = None,
    max_rows: int = 16,
    logprobs: list[list[float]] | None = None,
) -> list[list[int]]:
    """`kvgen.generate_batch` on the llamacpp engine: new tokens for every prompt; with `keep`, the finished
    sequences stay in the engine's slots for the next call's grown prompts (by index) and replace the last
    call's."""
    decoder = LlamaCppDecoder(engine, stop_ids, sampling, keep, generator, max_rows, logprobs is not None)
    for index, prompt in enumerate(prompts):
        decoder.submit(index, prompt)
    outputs: dict[Hashable, list[int]] = {}
    while decoder.busy:
        outputs.update(decoder.step())
    if keep:
        engine.keep(set(range(len(prompts))))
    if logprobs is not None and decoder.logprobs is not None:
        logprobs[:] = [decoder.logprobs[index] for index in range(len(prompts))]
    return [outputs[index] for index in range(len(prompts))]
