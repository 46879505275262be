"""A local Hugging Face causal LM as a tool-calling policy, batched across conversations.

Prompts are rendered by `ftrl.formats.render` (natively for templates with tool support, tools in the system
prompt otherwise); decoding is ftrl's continuous batching with per-conversation KV caches (`ftrl.rollout.kvgen`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from ftrl.formats import get_format
from ftrl.formats.render import PROMPT_VARIANTS, render_prompt, stop_token_ids, template_kwargs, template_supports_tools
from ftrl.rollout.kvgen import Decoder, PrefixCache, Sampling, generate_batch
from ftrl.rollout.models import placement, resolve_model
from ftrl.rollout.policy import GenerationStats, Message


@dataclass
class HFConfig:
    """Generation settings; `max_batch` bounds rows decoded together, `threads` sets torch's CPU threads."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    max_batch: int = 16
    enable_thinking: bool = False
    tool_format: str = "hermes"
    prompt: str = "example"
    prefix_cache: bool = True
    seed: int = 0
    threads: int | None = None
    device: str = "auto"  # auto: CUDA when present (`ftrl.rollout.models.placement`)
    dtype: str = "auto"  # auto: bf16 on CUDA, fp32 on a CPU


@dataclass
class HFPolicy:
    """Batched generation with a prefix KV cache (`ftrl.rollout.kvgen`); see the module docstring for prompts."""

    model: Any
    tokenizer: Any
    config: HFConfig = field(default_factory=HFConfig)
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        if self.config.prompt not in PROMPT_VARIANTS:
            raise ValueError(f"unknown prompt variant {self.config.prompt!r}; known: {', '.join(PROMPT_VARIANTS)}")
        self.format = get_format(self.config.tool_format)
        self.native_tools = template_supports_tools(self.tokenizer)
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)
        self._cache = PrefixCache() if self.config.prefix_cache else None
        self._generator = torch.Generator(device=self.model.device).manual_seed(self.config.seed)
        self._decoder: Decoder | None = None
        self._template_kwargs = template_kwargs(self.tokenizer, self.config.enable_thinking)

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
        outputs = generate_batch(
            self.model, prompts, self.stop_ids, self._sampling(), self._cache, self._generator, self.config.max_batch
        )
        self.stats.calls += 1
        self.stats.completion_tokens += sum(len(o) for o in outputs)
        return [self._reply(o) for o in outputs]

    def submit(self, key: Hashable, messages: list[Message], tools: list[dict] | None) -> None:
        """Queue a conversation's next turn for continuous batching (`StreamingPolicy`)."""
        if self._decoder is None or not self._decoder.busy:  # a fresh batch picks up changed settings
            self._decoder = Decoder(
                self.model, self.stop_ids, self._sampling(), self._cache, self._generator, self.config.max_batch
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

    def _sampling(self) -> Sampling:
        return Sampling(self.config.max_new_tokens, self.config.temperature, self.config.top_p)

    def _reply(self, tokens: list[int]) -> Message:
        return self.format.parse(self.tokenizer.decode(tokens, skip_special_tokens=True))
