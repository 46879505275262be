"""Tool-call text formats: parse generated text into OpenAI-style assistant messages and render them back.

A canonical assistant message is `{"role": "assistant", "content": str | None, "tool_calls": [...] | None}`
with each call `{"id", "type": "function", "function": {"name", "arguments": <JSON string>}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ftrl.formats.hermes import clean_response, parse_hermes, render_hermes
from ftrl.formats.llama31 import parse_llama31, render_llama31
from ftrl.formats.openai import from_openai, to_openai
from ftrl.formats.prompt import fold_tool_turns, render_tool_message, render_tool_system_prompt


@dataclass(frozen=True)
class ToolCallFormat:
    """A named pair of parser and renderer for one model family's tool-call text."""

    name: str
    parse: Callable[[str], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]


FORMATS: dict[str, ToolCallFormat] = {
    "hermes": ToolCallFormat("hermes", parse_hermes, render_hermes),
    "llama31": ToolCallFormat("llama31", parse_llama31, render_llama31),
}


def get_format(name: str) -> ToolCallFormat:
    """The format registered as `name` (`hermes` for Qwen-style models, `llama31`)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown tool-call format {name!r}; known: {', '.join(FORMATS)}") from None


__all__ = [
    "FORMATS",
    "ToolCallFormat",
    "clean_response",
    "fold_tool_turns",
    "from_openai",
    "get_format",
    "parse_hermes",
    "parse_llama31",
    "render_hermes",
    "render_llama31",
    "render_tool_message",
    "render_tool_system_prompt",
    "to_openai",
]
