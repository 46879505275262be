"""OpenAI chat-completions messages <-> the canonical assistant message.

Servers differ in what they return (arguments as a dict or a string, `content: null`, missing call ids,
SDK objects instead of dicts) and in what they accept (llama.cpp's server answers HTTP 500 to
`"content": null`), so both directions normalise here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ftrl.formats.calls import assistant_message, call_id, dumps_arguments


def from_openai(message: Mapping[str, Any] | Any, one_tool_only: bool = False) -> dict[str, Any]:
    """Canonical assistant message from a server's `choices[i].message` (a dict or an SDK object).

    Arguments become JSON strings; empty or `null` arguments become `"{}"` as the reference's API client does,
    unparsable strings are kept so executing the call reports the error; calls without an id get a
    deterministic one.
    """
    if not isinstance(message, Mapping):
        message = message.model_dump()
    calls = []
    for index, raw in enumerate((message.get("tool_calls") or [])[: 1 if one_tool_only else None]):
        function = raw["function"]
        arguments = _arguments_string(function.get("arguments"))
        calls.append(
            {
                "id": raw.get("id") or call_id(index, function["name"], arguments),
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return assistant_message(message.get("content"), calls)


def _arguments_string(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            return "{}" if json.loads(arguments) is None else arguments
        except ValueError:  # empty or broken: keep broken text so the tool error reaches the model
            return "{}" if not arguments.strip() else arguments
    return "{}" if arguments is None else dumps_arguments(arguments)


def to_openai(message: Mapping[str, Any], null_content: str | None = "") -> dict[str, Any]:
    """A message ready to send to a chat-completions server: `content: None` becomes `null_content` and
    `tool_calls` is omitted when there are none (some servers reject `null` or `[]` there)."""
    out = {key: value for key, value in message.items() if key != "tool_calls"}
    if out.get("content") is None:
        out["content"] = null_content
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["function"]["name"],
                    "arguments": _arguments_string(call["function"]["arguments"]),
                },
            }
            for call in calls
        ]
    return out
