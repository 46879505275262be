"""A local Hugging Face causal LM as a tool-calling policy, batched across conversations.

Templates that render `tools=` (Qwen2.5/3, Llama 3.1) are used natively. Others (SmolLM2 ignores `tools=`)
get the tools and the call format in the system prompt, tool results as user turns and earlier calls as
hermes text (`ftrl.formats.prompt`). The prompt variant is an option because small models are sensitive to
it; the default is the one measured best on the embedded model (benchmarks/RESULTS.md, "Rollouts").
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from jinja2 import TemplateError

from ftrl.formats import (
    fold_tool_turns,
    get_format,
    render_tool_message,
    render_tool_system_prompt,
)
from ftrl.formats.calls import assistant_message, dumps_arguments, make_tool_call
from ftrl.formats.prompt import (
    EXAMPLE_ANSWER,
    EXAMPLE_CALL,
    EXAMPLE_QUESTION,
    EXAMPLE_RESULT,
)
from ftrl.rollout.kvgen import Decoder, PrefixCache, Sampling, generate_batch
from ftrl.rollout.models import placement, resolve_model
from ftrl.rollout.policy import GenerationStats, Message
from ftrl.settings import SamplingConfig

#: End-of-turn tokens of common chat templates, stopped on when the vocabulary has them.
TURN_END_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
)

HINT = (
    "Call one tool at a time and copy argument values from the question or from earlier tool results. "
    "When the tool results answer the question, reply with the final answer and no tool call."
)


@dataclass(frozen=True)
class ToolPrompt:
    """A tool prompt variant for templates without tool support.

    `example`: the worked example inside the system prompt; `fewshot`: the same example as real chat turns
    before the conversation; `hint`: an extra instruction after the tools block.
    """

    example: bool = False
    fewshot: bool = False
    hint: str = ""


PROMPT_VARIANTS: dict[str, ToolPrompt] = {
    "example": ToolPrompt(example=True),
    "plain": ToolPrompt(),
    "example-hint": ToolPrompt(example=True, hint=HINT),
    "fewshot": ToolPrompt(fewshot=True),
}


@dataclass(kw_only=True)
class HFConfig:
    """Generation settings; `max_batch` bounds rows decoded together, `threads` sets torch's CPU threads."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_batch: int = 16
    tool_format: str = "hermes"
    prompt: str = "example"
    prefix_cache: bool = True
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
        self._generator = torch.Generator(device=self.model.device).manual_seed(self.config.sampling.seed)
        self._decoder: Decoder | None = None
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
        sampling = self.config.sampling
        return Sampling(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p)

    def _reply(self, tokens: list[int]) -> Message:
        return self.format.parse(self.tokenizer.decode(tokens, skip_special_tokens=True))


def render_prompt(
    tokenizer: Any,
    messages: list[Message],
    tools: list[dict] | None,
    *,
    prompt: str = "example",
    tool_format: str = "hermes",
    native: bool | None = None,
    template_kwargs: dict[str, Any] | None = None,
) -> str:
    """The generation prompt of a conversation: the one place rollouts, evaluation and training render prompts.

    Templates that support `tools=` render natively; others get `tool_prompt_messages`.
    """
    kwargs = template_kwargs or {}
    if native is None:
        native = template_supports_tools(tokenizer)
    if tools and native:
        return tokenizer.apply_chat_template(
            [_native_message(m) for m in messages], tools=tools, tokenize=False, add_generation_prompt=True, **kwargs
        )
    if tools:
        messages = tool_prompt_messages(messages, tools, prompt=prompt, tool_format=tool_format)
    return tokenizer.apply_chat_template(
        [{**m, "content": m.get("content") or ""} for m in messages],
        tokenize=False,
        add_generation_prompt=True,
        **kwargs,
    )


def tool_prompt_messages(
    messages: list[Message], tools: list[dict], *, prompt: str = "example", tool_format: str = "hermes"
) -> list[Message]:
    """Messages for a template without tool support: tools (and the prompt variant) in the system prompt,
    earlier calls as text, tool results as user turns."""
    variant = PROMPT_VARIANTS[prompt]
    block = render_tool_system_prompt(tools, example=variant.example, style=tool_format)
    if variant.hint:
        block = f"{block}\n\n{variant.hint}"
    folded = fold_tool_turns(messages, style=tool_format)
    if folded and folded[0].get("role") == "system":
        block = f"{folded[0]['content']}\n\n{block}"
        folded = folded[1:]
    shots = fewshot_turns(tool_format) if variant.fewshot else []
    return [{"role": "system", "content": block}, *shots, *folded]


def fewshot_turns(tool_format: str = "hermes") -> list[Message]:
    """The worked example of `ftrl.formats.prompt` as a real exchange of chat turns."""
    name, arguments = EXAMPLE_CALL
    call = assistant_message("", [make_tool_call(0, name, dumps_arguments(arguments))])
    return [
        {"role": "user", "content": EXAMPLE_QUESTION},
        {"role": "assistant", "content": get_format(tool_format).render(call)},
        render_tool_message(EXAMPLE_RESULT),
        {"role": "assistant", "content": EXAMPLE_ANSWER},
    ]


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the chat template renders `tools=` at all (SmolLM2's ignores it)."""
    probe = [{"role": "user", "content": "hi"}]
    tool = {
        "type": "function",
        "function": {
            "name": "probe_tool",
            "description": "d",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    try:
        with_tools = tokenizer.apply_chat_template(probe, tools=[tool], tokenize=False, add_generation_prompt=True)
    except (
        TemplateError,
        TypeError,
        ValueError,
        KeyError,
    ):  # templates that choke on tools do not support them
        return False
    return with_tools != tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-turn ids: the generation config's eos ids, the tokenizer's eos and known turn-end tokens."""
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in TURN_END_TOKENS if token in vocab)
    return ids


def template_kwargs(tokenizer: Any, enable_thinking: bool = False) -> dict[str, Any]:
    """Chat-template options ftrl renders with: thinking off unless asked, for templates that have the switch."""
    return {"enable_thinking": enable_thinking} if _mentions(tokenizer, "enable_thinking") else {}


def _mentions(tokenizer: Any, word: str) -> bool:
    template = tokenizer.chat_template
    return isinstance(template, str) and word in template


def _native_message(message: Message) -> Message:
    """A message as HF templates expect it: string content, tool-call arguments as objects."""
    out = {**message, "content": message.get("content") or ""}
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            {
                **call,
                "function": {
                    **call["function"],
                    "arguments": _as_object(call["function"].get("arguments")),
                },
            }
            for call in calls
        ]
    elif "tool_calls" in out:
        del out["tool_calls"]
    return out


def _as_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments
