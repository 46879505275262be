"""A local Hugging Face causal LM as a tool-calling policy, batched across conversations.

Prompts are rendered by `ftrl.formats.render` (natively for templates with tool support, tools in the system
prompt otherwise). Decoding runs on one of three engines: `kvgen` (ftrl's continuous batching with per-conversation
KV caches kept between turns, `ftrl.rollout.kvgen`), `int8` (kvgen over an int8 copy of the model,
`ftrl.rollout.quant`: several times faster on a CPU, and a slightly different model) or `hf` (transformers' own
`model.generate`, left-padded batches). `auto` picks kvgen when it supports the model (`kvgen.unsupported_reason`)
and says once why not.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ftrl.formats import get_format
from ftrl.formats.render import PROMPT_VARIANTS, render_prompt, stop_token_ids, template_kwargs, template_supports_tools
from ftrl.models import placement, resolve_model
from ftrl.rollout.kvgen import Decoder, PrefixCache, generate_batch, unsupported_reason
from ftrl.rollout.policy import GenerationStats, Message
from ftrl.settings import SamplingConfig

ENGINES = ("auto", "kvgen", "int8", "hf")

logger = logging.getLogger(__name__)
_explained: set[str] = set()


@dataclass(kw_only=True)
class HFConfig:
    """Generation settings; `max_batch` bounds rows decoded together, `threads` sets torch's CPU threads."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_batch: int = 16
    tool_format: str = "hermes"
    prompt: str = "example"
    prefix_cache: bool = True
    threads: int | None = None
    device: str = "auto"  # auto: CUDA when present (`ftrl.models.placement`)
    dtype: str = "auto"  # auto: bf16 on CUDA, fp32 on a CPU
    engine: str = "auto"  # kvgen, int8, hf (transformers' generate) or auto: kvgen when it supports the model


@dataclass
class HFPolicy:
    """Batched generation on `config.engine` (see the module docstring); prompts by `ftrl.formats.render`."""

    model: Any
    tokenizer: Any
    config: HFConfig = field(default_factory=HFConfig)
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        if self.config.prompt not in PROMPT_VARIANTS:
            raise ValueError(f"unknown prompt variant {self.config.prompt!r}; known: {', '.join(PROMPT_VARIANTS)}")
        self.format = get_format(self.config.tool_format)
        self.engine = choose_engine(self.config.engine, self.model)
        #: The model that decodes: `model` itself, or its int8 copy for the `int8` engine.
        self.decoder_model = self.model
        if self.engine == "int8":
            from ftrl.rollout.quant import quantize_int8

            self.decoder_model = quantize_int8(self.model)
        self.native_tools = template_supports_tools(self.tokenizer)
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)
        self._cache = PrefixCache() if self.config.prefix_cache and self.engine != "hf" else None
        self._generator = torch.Generator(device=self.model.device).manual_seed(self.config.sampling.seed)
        self._decoder: Decoder | GenerateDecoder | None = None
        self._template_kwargs = template_kwargs(self.tokenizer, self.config.sampling.enable_thinking)

    @classmethod
    def load(cls, spec: str, config: HFConfig | None = None) -> HFPolicy:
        """Load a local model directory, a cached hub id or `embedded` on `config.device` in `config.dtype`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = config or HFConfig()
        if config.threads:
            torch.set_num_threads(config.threads)
        path = resolve_model(spec)
        device, dtype = placement(config.device, config.dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, tokenizer, config)

    def render(self, messages: list[Message], tools: list[dict] | None) -> str:
        """The prompt text of one conversation, ending with the assistant generation prompt."""
        return render_prompt(
            self.tokenizer,
            messages,
            tools,
            prompt=self.config.prompt,
            tool_format=self.format.name,
            native=self.native_tools,
            template_kwargs=self._template_kwargs,
        )

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        prompts = [self._tokens(c, tools[i] if tools else None) for i, c in enumerate(conversations)]
        if self.engine != "hf":
            outputs = generate_batch(
                self.decoder_model,
                prompts,
                self.stop_ids,
                self._sampling(),
                self._cache,
                self._generator,
                self.config.max_batch,
            )
        else:
            outputs = hf_generate(
                self.model,
                prompts,
                self.stop_ids,
                self._sampling(),
                self._pad_id(),
                self._generator,
                self.config.max_batch,
            )
        self.stats.calls += 1
        self.stats.completion_tokens += sum(len(o) for o in outputs)
        return [self._reply(o) for o in outputs]

    def submit(self, key: Hashable, messages: list[Message], tools: list[dict] | None) -> None:
        """Queue a conversation's next turn for continuous batching (`StreamingPolicy`)."""
        if self._decoder is None or not self._decoder.busy:  # a fresh batch picks up changed settings
            if self.engine != "hf":
                self._decoder = Decoder(
                    self.decoder_model,
                    self.stop_ids,
                    self._sampling(),
                    self._cache,
                    self._generator,
                    self.config.max_batch,
                )
            else:
                self._decoder = GenerateDecoder(
                    self.model, self.stop_ids, self._sampling(), self._pad_id(), self._generator, self.config.max_batch
                )
        self._decoder.submit(key, self._tokens(messages, tools))

    def step(self) -> list[tuple[Hashable, Message]]:
        if self._decoder is None:
            return []
        finished = self._decoder.step()
        self.stats.calls += 1
        self.stats.completion_tokens += sum(len(o) for _, o in finished)
        return [(key, self._reply(o)) for key, o in finished]

    def release(self, key: Hashable) -> None:
        if self._cache is not None:
            self._cache.release(key)

    def _tokens(self, messages: list[Message], tools: list[dict] | None) -> list[int]:
        tokens = self.tokenizer(self.render(messages, tools), add_special_tokens=False)["input_ids"]
        self.stats.prompt_tokens += len(tokens)
        return tokens

    def _sampling(self) -> SamplingConfig:
        return self.config.sampling

    def _pad_id(self) -> int:
        """Left padding for `hf_generate`: the tokenizer's pad token, else a stop token (masked out either way)."""
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)

    def _reply(self, tokens: list[int]) -> Message:
        return self.format.parse(self.tokenizer.decode(tokens, skip_special_tokens=True))


def choose_engine(engine: str, model: Any) -> str:
    """`kvgen`, `int8` or `hf` for `engine`: `auto` is kvgen unless `kvgen.unsupported_reason` objects (logged
    once); `int8` decodes with kvgen, so a model kvgen cannot decode is an error there."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    reason = unsupported_reason(model) if engine in ("auto", "int8") else None
    if engine == "int8" and reason is not None:
        raise ValueError(f"the int8 engine decodes with kvgen, which cannot decode this model: {reason}")
    if engine != "auto":
        return engine
    if reason is None:
        return "kvgen"
    if reason not in _explained:
        _explained.add(reason)
        logger.warning("decoding with transformers' generate instead of kvgen: %s", reason)
    return "hf"


@torch.inference_mode()
def hf_generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    stop_ids: set[int],
    sampling: SamplingConfig,
    pad_id: int,
    generator: torch.Generator | None = None,
    max_rows: int = 16,
) -> list[list[int]]:
    """New tokens for every prompt through transformers' `model.generate`, `max_rows` left-padded prompts at a
    time; like `kvgen.generate_batch`, each ends with its stop token unless cut at `max_new_tokens`.

    Only `sampling` shapes decoding (no top-k, no repetition penalty from the model's generation config). With a
    `generator`, a sampled batch draws its seed from it, so runs repeat without touching torch's global random
    state (without one, sampling uses the global state, as `kvgen` does).
    """
    from transformers import GenerationConfig

    sample = sampling.temperature > 0
    config = GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=sample,
        eos_token_id=sorted(stop_ids),
        pad_token_id=pad_id,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        **({"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0} if sample else {}),
    )
    device = model.device
    outputs: list[list[int]] = []
    for start in range(0, len(prompts), max_rows):
        chunk = prompts[start : start + max_rows]
        width = max(len(prompt) for prompt in chunk)
        ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        seed = _draw_seed(generator) if sample and generator is not None else None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        outputs += [_until_stop(row[width:].tolist(), stop_ids) for row in out]
    return outputs


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**62, (1,), generator=generator, device=generator.device))


def _until_stop(tokens: list[int], stop_ids: set[int]) -> list[int]:
    """`tokens` up to and including the first stop token (what follows is padding)."""
    for index, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[: index + 1]
    return tokens


class GenerateDecoder:
    """`kvgen.Decoder`'s interface over `hf_generate`, for `StreamingPolicy`: each step decodes up to `max_rows`
    waiting prompts to their end together (no rows join mid-flight, nothing is cached between turns)."""

    def __init__(
        self,
        model: Any,
        stop_ids: set[int],
        sampling: SamplingConfig,
        pad_id: int,
        generator: torch.Generator | None = None,
        max_rows: int = 16,
    ):
        self.model, self.stop_ids, self.sampling, self.pad_id = model, stop_ids, sampling, pad_id
        self.generator, self.max_rows = generator, max_rows
        self.pending: deque[tuple[Hashable, list[int]]] = deque()

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def submit(self, key: Hashable, prompt: Sequence[int]) -> None:
        if not prompt:
            raise ValueError(f"empty prompt for {key!r}")
        self.pending.append((key, list(prompt)))

    def step(self) -> list[tuple[Hashable, list[int]]]:
        batch = [self.pending.popleft() for _ in range(min(self.max_rows, len(self.pending)))]
        if not batch:
            return []
        outputs = hf_generate(
            self.model, [p for _, p in batch], self.stop_ids, self.sampling, self.pad_id, self.generator, self.max_rows
        )
        return [(key, out) for (key, _), out in zip(batch, outputs, strict=True)]
