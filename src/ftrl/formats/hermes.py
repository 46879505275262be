"""Hermes / Qwen2.5 tool calls: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks.

`parse_hermes` reproduces the reference `parse_qwen` (bytedance/FTRL `Code/utils/parse_output.py`) exactly,
because the training reward depends on which calls it accepts. Quirks kept on purpose:

- content is only the text *before* the first `<tool_call>`; text between or after calls is dropped;
- the text is split on `</tool_call>` and a piece is a call only if, stripped, it *starts* with `<tool_call>`,
  so a call preceded by prose in its piece (`... </tool_call> then <tool_call>{...}`) is silently skipped;
- the tag is removed with `str.lstrip('<tool_call>')`, which strips any leading run of the *characters*
  `<>_aclot`, not the tag: `<tool_call><tool_call>{...}` and `<tool_call>call {...}` both still parse;
- a call needs a truthy `name` and an `arguments` key; non-dict arguments are `json.loads`-ed (so a string
  `"5"` becomes the call arguments `5`); any error skips that call; with no call parsed the whole text is content.

Only call ids differ from the reference: they are deterministic (see `ftrl.formats.calls`).
"""

from __future__ import annotations

import json
from typing import Any

from ftrl.formats.calls import assistant_message, dumps_arguments, loads_arguments, make_tool_call

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
TOOL_RESPONSE_START = "<tool_response>"
TOOL_RESPONSE_END = "</tool_response>"


def clean_response(response: str) -> str:
    """Strip end-of-turn tokens exactly as the reference reward does before parsing a training response."""
    return response.strip().removesuffix("<|endoftext|>").strip().removesuffix("<|im_end|>").strip()


def parse_hermes(text: str, one_tool_only: bool = False) -> dict[str, Any]:
    """Parse generated text into an assistant message with the reference `parse_qwen` semantics."""
    start = text.find(TOOL_CALL_START)
    if start == -1:
        return assistant_message(text.strip(), None)
    content = text[:start].strip() if start != 0 else ""
    pieces = text[start:].split(TOOL_CALL_END)
    if one_tool_only:
        pieces = pieces[:1]
    calls: list[dict[str, Any]] = []
    for piece in pieces:
        call = _parse_piece(piece, len(calls))
        if call is not None:
            calls.append(call)
    if not calls:
        return assistant_message(text.strip(), None)
    return assistant_message(content, calls)


def _parse_piece(piece: str, index: int) -> dict[str, Any] | None:
    piece = piece.strip()
    if not piece.startswith(TOOL_CALL_START):
        return None
    try:
        # lstrip with a *character set* is the reference's behaviour, reproduced on purpose (module docstring).
        raw = json.loads(piece.lstrip(TOOL_CALL_START).strip())
        if not raw.get("name"):
            return None
        arguments = raw["arguments"]
        if type(arguments) is not dict:
            arguments = json.loads(arguments)
        return make_tool_call(index, raw["name"], dumps_arguments(arguments))
    except Exception:  # the reference skips a call on any error
        return None


def render_hermes(message: dict[str, Any]) -> str:
    """An assistant message as the text a Qwen2.5-style model generates (inverse of `parse_hermes`)."""
    parts = [message["content"]] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        function = call["function"]
        body = {"name": function["name"], "arguments": loads_arguments(function["arguments"])}
        parts.append(f"{TOOL_CALL_START}\n{json.dumps(body, ensure_ascii=False)}\n{TOOL_CALL_END}")
    return "\n".join(parts)


def render_tool_response(content: str) -> str:
    """One tool result wrapped as Qwen2.5 templates show it inside a user turn."""
    return f"{TOOL_RESPONSE_START}\n{content}\n{TOOL_RESPONSE_END}"
