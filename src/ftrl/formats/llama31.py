"""Llama-3.1 JSON tool calls: `{"name": ..., "parameters": {...}}`, bare or after `<|python_tag|>`.

The reference `parse_llama31` keeps only the first call and needs `json_repair`; here every call is kept
(`one_tool_only=True` gives the reference behaviour), `arguments` is accepted as an alias of `parameters`, and
JSON is read with the standard library, tolerating trailing text such as `<|eom_id|>`. `json_repair` is used as
a last resort only when it happens to be installed. A bare reply counts as a call only when it starts with
`{` or `[`, so prose that merely contains JSON stays content.
"""

from __future__ import annotations

import json
from typing import Any

from ftrl.formats.calls import assistant_message, dumps_arguments, loads_arguments, make_tool_call

PYTHON_TAG = "<|python_tag|>"


def parse_llama31(text: str, one_tool_only: bool = False) -> dict[str, Any]:
    """Parse generated text into an assistant message; with no valid call the whole text is content."""
    start = text.find(PYTHON_TAG)
    if start == -1:
        content, payloads = "", [text.strip()] if text.strip()[:1] in ("{", "[") else []
    else:
        content, payloads = text[:start].strip(), text[start:].split(PYTHON_TAG)[1:]
    raw_calls = [item for payload in payloads for item in _as_list(_loads_tolerant(payload.strip()))]
    if one_tool_only:
        raw_calls = raw_calls[:1]
    calls: list[dict[str, Any]] = []
    for raw in raw_calls:
        call = _to_call(raw, len(calls))
        if call is not None:
            calls.append(call)
    if not calls:
        return assistant_message(text.strip(), None)
    return assistant_message(content, calls)


def _loads_tolerant(payload: str) -> Any:
    """The first JSON value of `payload`, ignoring trailing text; None when there is none."""
    try:
        return json.JSONDecoder().raw_decode(payload)[0]
    except ValueError:
        pass
    try:
        import json_repair
    except ImportError:
        return None
    try:
        return json_repair.loads(payload)
    except Exception:  # json_repair gives up in its own ways; either way there is no call here
        return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _to_call(raw: Any, index: int) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        return None
    arguments = raw.get("parameters", raw.get("arguments"))
    if isinstance(arguments, str):
        arguments = _loads_tolerant(arguments)
    if not isinstance(arguments, dict):
        return None
    return make_tool_call(index, raw["name"], dumps_arguments(arguments))


def render_llama31(message: dict[str, Any]) -> str:
    """An assistant message as Llama-3.1 text: one call alone is bare JSON (as Meta's template writes it);
    content or several calls put `<|python_tag|>` before each call so `parse_llama31` can find them again."""
    calls = [
        json.dumps(
            {"name": call["function"]["name"], "parameters": loads_arguments(call["function"]["arguments"])},
            ensure_ascii=False,
        )
        for call in message.get("tool_calls") or []
    ]
    content = message.get("content") or ""
    if len(calls) == 1 and not content:
        return calls[0]
    return content + "".join(PYTHON_TAG + call for call in calls)
