"""Canonical tool-call dicts shared by every format, with deterministic call ids.

The reference ids are `call_` + sha256 of the current timestamp, so two runs never agree; ours hash the call's
position in its message, its name and its arguments, so parsing the same text twice gives the same ids (stable
tests, reproducible trajectories) while two identical calls in one message still get different ids.
"""

from __future__ import annotations

import json
from hashlib import sha256
from typing import Any

CALL_ID_HEX_CHARS = 24


def call_id(index: int, name: Any, arguments: str) -> str:
    """Deterministic id of the `index`-th call of a message."""
    digest = sha256(f"{index}\x00{name}\x00{arguments}".encode()).hexdigest()
    return "call_" + digest[:CALL_ID_HEX_CHARS]


def dumps_arguments(arguments: Any) -> str:
    """Serialise arguments the way the reference does (default separators, non-ASCII kept)."""
    return json.dumps(arguments, ensure_ascii=False)


def make_tool_call(index: int, name: Any, arguments: str) -> dict[str, Any]:
    """One OpenAI-style tool call; `arguments` is already a JSON string."""
    return {
        "id": call_id(index, name, arguments),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def assistant_message(content: str | None, tool_calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The canonical assistant message: `tool_calls` is None (never `[]`) when there are no calls."""
    return {"role": "assistant", "content": content, "tool_calls": tool_calls or None}


def loads_arguments(arguments: Any) -> Any:
    """Arguments of a canonical call as a Python value (a dict for any well-formed call)."""
    return json.loads(arguments) if isinstance(arguments, str) else arguments
