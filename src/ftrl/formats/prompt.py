"""Tool-use prompts for chat templates without tool support (e.g. SmolLM2-135M-Instruct ignores `tools=`).

The tools and the call format go into the system prompt as text, and tool results go back as user turns.
Measured on SmolLM2-135M-Instruct: 0/8 well-formed calls from the instructions alone, 7/8 with one worked
example, hence `example=True` by default. The example is rendered with the same code that renders real calls,
so it can never drift from the format the parser expects. All prompt texts live in this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ftrl.formats.calls import assistant_message, dumps_arguments, make_tool_call
from ftrl.formats.hermes import render_hermes, render_tool_response
from ftrl.formats.llama31 import render_llama31

HERMES_INSTRUCTIONS = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

LLAMA31_INSTRUCTIONS = """# Tools

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {{"name": function name, "parameters": dictionary of argument name and its value}}. Do not use variables.

<tools>
{tools}
</tools>"""

EXAMPLE_TEMPLATE = """# Example

This example uses a made-up tool that is not available to you; it only shows the format.
User: {question}
Assistant:
{call}
User:
{result}
Assistant: {answer}"""

EXAMPLE_QUESTION = "How many moons does Mars have?"
EXAMPLE_CALL = ("planet_fact_lookup", {"planet": "Mars", "fact": "moons"})
EXAMPLE_RESULT = '{"planet": "Mars", "moons": 2}'
EXAMPLE_ANSWER = "Mars has 2 moons."

_STYLES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "hermes": (HERMES_INSTRUCTIONS, render_hermes),
    "llama31": (LLAMA31_INSTRUCTIONS, render_llama31),
}


def _style(name: str) -> tuple[str, Callable[[dict[str, Any]], str]]:
    if name not in _STYLES:
        raise ValueError(f"unknown tool prompt style {name!r}; known: {', '.join(_STYLES)}")
    return _STYLES[name]


def render_tool_system_prompt(tools: Sequence[dict[str, Any]], *, example: bool = True, style: str = "hermes") -> str:
    """The tools block of a system prompt: tool schemas as JSON lines, the call format, one worked example."""
    instructions, render = _style(style)
    text = instructions.format(tools="\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools))
    if not example:
        return text
    name, arguments = EXAMPLE_CALL
    call = render(assistant_message("", [make_tool_call(0, name, dumps_arguments(arguments))]))
    worked = EXAMPLE_TEMPLATE.format(
        question=EXAMPLE_QUESTION, call=call, result=render_tool_response(EXAMPLE_RESULT), answer=EXAMPLE_ANSWER
    )
    return f"{text}\n\n{worked}"


def render_tool_message(content: str) -> dict[str, str]:
    """A tool result as a user turn, for templates that have no `tool` role."""
    return {"role": "user", "content": render_tool_response(content)}


def fold_tool_turns(messages: Sequence[dict[str, Any]], *, style: str = "hermes") -> list[dict[str, Any]]:
    """A conversation rewritten for a template without tool support: assistant tool calls become text in the
    call format, and each run of consecutive tool results becomes one user turn (as Qwen2.5 templates group them).
    """
    render = _style(style)[1]
    folded: list[dict[str, Any]] = []
    previous_role = None
    for message in messages:
        role = message.get("role")
        if role == "tool":
            result = render_tool_message(str(message.get("content") or ""))
            if previous_role == "tool":
                folded[-1]["content"] += "\n" + result["content"]
            else:
                folded.append(result)
        elif role == "assistant" and message.get("tool_calls"):
            folded.append({"role": "assistant", "content": render(message)})
        else:
            folded.append(dict(message))
        previous_role = role
    return folded
