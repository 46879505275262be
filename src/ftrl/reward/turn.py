"""Per-turn training reward (reference `compute_solve_{f1,precision,rate,pr}` in bytedance/FTRL
`Code/verl/utils/reward_score/tool.py`), as a pure function of the parsed turn and its tool outputs.

With p calls of which q solve a pending sub-answer: f1 = 2q/(p+1) (the paper's default), p = q/p, r = q,
pr = q*q/p. A turn without a parsed call falls through these checks in this order (the first that holds wins):
empty content -> -0.5; leftover tool-call tags -> -0.3; the gold final answer inside the content -> 1/(1+t)
with t the sub-answers still pending *before* the turn; every sub-answer already solved -> 0.5 (strict matcher:
0, and the final answer must pass `strict_final_answer`); else 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ftrl.reward.match import Matcher, answer_verify, is_strict, reference_final_answer, strict_final_answer
from ftrl.reward.solve import pending_count, solve_calls

#: `(q, p) -> reward` for a turn with p >= 1 tool calls, q of them solving a sub-answer.
REWARD_KINDS: dict[str, Callable[[int, int], float]] = {
    "f1": lambda q, p: 2 * q / (p + 1),
    "p": lambda q, p: q / p,
    "r": lambda q, p: float(q),
    "pr": lambda q, p: q * q / p,
}
#: Text that shows a tool call was attempted but not parsed.
MALFORMED_CALL_MARKERS = ("<tool_call>", "</tool_call>", "<tool_parsed_response>")

EMPTY_REWARD = -0.5
MALFORMED_REWARD = -0.3
ALL_SOLVED_REWARD = 0.5


@dataclass(frozen=True)
class TurnScore:
    """A turn's reward and why: `branch` is `tool_calls`, `empty`, `malformed`, `answer`, `all_solved` or `none`."""

    reward: float
    n_calls: int
    n_solved: int
    remaining: dict[str, list[str]]
    solved: list[tuple[str, str]]
    branch: str


def turn_reward(
    message: Mapping[str, Any],
    tool_outputs: Sequence[str],
    unsolved_set: Mapping[str, Sequence[str]],
    solve_rate: float,
    answer: str | None,
    kind: str = "f1",
    matcher: Matcher = answer_verify,
) -> TurnScore:
    """Reward of one parsed assistant turn given the outputs of its tool calls (no tool runs here)."""
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward kind {kind!r}; known: {', '.join(REWARD_KINDS)}")
    calls = message.get("tool_calls") or []
    if calls:
        remaining, solved = solve_calls(calls, tool_outputs, unsolved_set, matcher)
        reward = REWARD_KINDS[kind](len(solved), len(calls))
        return TurnScore(reward, len(calls), len(solved), remaining, solved, "tool_calls")
    reward, branch = _no_call_reward(message.get("content"), unsolved_set, solve_rate, answer, is_strict(matcher))
    remaining = {tool: list(answers) for tool, answers in unsolved_set.items()}
    return TurnScore(reward, 0, 0, remaining, [], branch)


def _no_call_reward(
    content: str | None,
    unsolved_set: Mapping[str, Sequence[str]],
    solve_rate: float,
    answer: str | None,
    strict: bool,
) -> tuple[float, str]:
    if not content:
        return EMPTY_REWARD, "empty"
    if any(marker in content for marker in MALFORMED_CALL_MARKERS):
        return MALFORMED_REWARD, "malformed"
    # The reference tests `answer is not None` only: an empty gold answer is found in any non-empty content.
    # Strict: the answer as whole tokens, numbers as numbers, not within a list of candidates.
    stated = answer is not None and (
        strict_final_answer(content, answer) if strict else reference_final_answer(content, answer)
    )
    if stated:
        return 1 / (1 + pending_count(unsolved_set)), "answer"
    if solve_rate == 1.0:
        # the reference pays any text here; strict pays nothing for text that does not state the answer
        return (0.0 if strict else ALL_SOLVED_REWARD), "all_solved"
    return 0.0, "none"
