"""Prompt rendering with a Hugging Face tokenizer's chat template: the one renderer rollouts, evaluation, training
and `ftrl export verl` share, so a state's prompt is the same text everywhere.

Templates that render `tools=` (Qwen2.5/3, Llama 3.1) are used natively. Others (SmolLM2 ignores `tools=`) get the
tools and the call format in the system prompt, tool results as user turns and earlier calls as text in the call
format (`ftrl.formats.prompt`). The prompt variant is an option because small models are sensitive to it; the
default is the one measured best on the embedded model (benchmarks/RESULTS.md, "Rollouts").

Tool outputs are untrusted text (generated tool code returns what it likes): special tokens in them
(`<|im_start|>`, `<|eot_id|>`, the tokenizer's added tokens) are broken with a zero-width space before rendering
(`escape_tool_output`), so a tool cannot open a system or assistant turn in the next prompt.

Only the tokenizer is needed (no torch): `tokenizer` is anything with `apply_chat_template` and `chat_template`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from ftrl.formats import fold_tool_turns, get_format, render_tool_message, render_tool_system_prompt
from ftrl.formats.calls import assistant_message, dumps_arguments, make_tool_call
from ftrl.formats.prompt import EXAMPLE_ANSWER, EXAMPLE_CALL, EXAMPLE_QUESTION, EXAMPLE_RESULT

Message = dict[str, Any]

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


@dataclass(frozen=True, kw_only=True)
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
    messages = [escape_tool_output(m, tokenizer) if m.get("role") == "tool" else m for m in messages]
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


#: Chat-control tokens in the `<|name|>` form (ChatML, Llama 3, Phi...), escaped whatever the tokenizer.
_CONTROL_TOKEN = re.compile(r"<\|[^<>|\s]{1,64}\|>")
_ZERO_WIDTH_SPACE = "\u200b"
_TOKEN_PATTERNS: dict[int, tuple[Any, re.Pattern[str] | None]] = {}


def escape_tool_output(message: Message, tokenizer: Any) -> Message:
    """A tool message whose content cannot be read as chat-control tokens: every special or added token of the
    tokenizer, and anything of the `<|name|>` form, gets a zero-width space after its first character, so it
    tokenizes as plain text. Text without such tokens is returned unchanged."""
    content = message.get("content")
    if not isinstance(content, str) or "<" not in content:
        return message
    escaped = _CONTROL_TOKEN.sub(_break, content)
    pattern = _special_tokens(tokenizer)
    if pattern is not None:
        escaped = pattern.sub(_break, escaped)
    return message if escaped == content else {**message, "content": escaped}


def _break(match: re.Match[str]) -> str:
    token = match.group()
    return token[0] + _ZERO_WIDTH_SPACE + token[1:]


def _special_tokens(tokenizer: Any) -> re.Pattern[str] | None:
    """One pattern of the tokenizer's special and added tokens (cached per tokenizer)."""
    cached = _TOKEN_PATTERNS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    tokens: set[str] = set(getattr(tokenizer, "all_special_tokens", None) or [])
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        try:
            tokens.update(added())
        except (TypeError, ValueError, AttributeError):
            pass
    tokens = {token for token in tokens if isinstance(token, str) and len(token) > 1}
    pattern = re.compile("|".join(map(re.escape, sorted(tokens, key=len, reverse=True)))) if tokens else None
    _TOKEN_PATTERNS[id(tokenizer)] = (tokenizer, pattern)
    return pattern


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
    except (TemplateError, TypeError, ValueError, KeyError):  # templates that choke on tools do not support them
        return False
    return with_tools != tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)


def template_kwargs(tokenizer: Any, enable_thinking: bool = False) -> dict[str, Any]:
    """Chat-template options ftrl renders with: thinking off unless asked, for templates that have the switch."""
    return {"enable_thinking": enable_thinking} if _mentions(tokenizer, "enable_thinking") else {}


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
