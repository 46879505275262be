"""The one rule shared by training rewards and evaluation metrics: which pending sub-answers a turn's calls solve.

Calls are taken in order with their outputs. A call's tool name selects that tool's pending gold answers; the
first one the matcher accepts against the call's output is removed and counts once. A call therefore solves at
most one sub-answer, and only for its own tool: an output containing another tool's answer earns nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ftrl.reward.match import Matcher, answer_verify


def pending_count(unsolved_set: Mapping[str, Sequence[str]]) -> int:
    """Number of gold sub-answers still to be produced."""
    return sum(len(answers) for answers in unsolved_set.values())


def solve_calls(
    tool_calls: Sequence[Mapping[str, Any]],
    tool_outputs: Sequence[str],
    unsolved_set: Mapping[str, Sequence[str]],
    matcher: Matcher = answer_verify,
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Apply one turn's calls; returns `(remaining, solved)` with `remaining` a new dict (input untouched)."""
    if len(tool_calls) != len(tool_outputs):
        raise ValueError(f"{len(tool_calls)} tool calls but {len(tool_outputs)} tool outputs")
    remaining = {tool: list(answers) for tool, answers in unsolved_set.items()}
    solved: list[tuple[str, str]] = []
    for call, output in zip(tool_calls, tool_outputs, strict=False):
        name = call["function"]["name"]
        pending = remaining.get(name, []) if isinstance(name, str) else []  # a parsed name may be any JSON
        arguments = _parsed_arguments(call["function"].get("arguments"))
        for index, gold in enumerate(pending):
            if matcher(output, gold, arguments):
                del pending[index]
                solved.append((name, gold))
                break
    return remaining, solved


def _parsed_arguments(arguments: Any) -> Mapping[str, Any] | None:
    """A call's arguments as a mapping for matchers that look at them; None when they are not an object."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return arguments if isinstance(arguments, Mapping) else None
