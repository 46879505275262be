"""Episode metrics for evaluation (reference `Code/evaluation/evaluation_self.py`), accumulated turn by turn.

With p tool calls over the whole episode, n gold sub-answers at the start and q of them solved:
Solve-P = q/p (1.0 when no call was made), Solve-R = q/n, Solve-F1 = 2q/(p+n). Which answers a turn solves is
decided by `solve_calls`, the same rule the training reward uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftrl.reward.match import Matcher, answer_verify
from ftrl.reward.solve import pending_count, solve_calls


@dataclass
class EpisodeScore:
    """Running Solve-P/R/F1 of one episode; create with `EpisodeScore.start(unsolved_set)`."""

    remaining: dict[str, list[str]]
    n_gold: int
    n_calls: int = 0
    n_turns: int = 0
    solved: list[tuple[str, str]] = field(default_factory=list)
    matcher: Matcher = field(default=answer_verify, repr=False, compare=False)

    @classmethod
    def start(cls, unsolved_set: Mapping[str, Sequence[str]], matcher: Matcher = answer_verify) -> EpisodeScore:
        """Begin an episode; like the reference, an environment must owe at least one sub-answer."""
        n_gold = pending_count(unsolved_set)
        if n_gold == 0:
            raise ValueError("episode metrics need at least one gold sub-answer in unsolved_set")
        return cls({tool: list(answers) for tool, answers in unsolved_set.items()}, n_gold, matcher=matcher)

    def add_turn(self, message: Mapping[str, Any], tool_outputs: Sequence[str]) -> list[tuple[str, str]]:
        """Count one assistant turn and the outputs of its calls; returns the sub-answers it solved."""
        calls = message.get("tool_calls") or []
        self.remaining, solved = solve_calls(calls, tool_outputs, self.remaining, self.matcher)
        self.n_turns += 1
        self.n_calls += len(calls)
        self.solved.extend(solved)
        return solved

    @property
    def n_solved(self) -> int:
        return len(self.solved)

    @property
    def solve_precision(self) -> float:
        return self.n_solved / self.n_calls if self.n_calls else 1.0

    @property
    def solve_rate(self) -> float:
        return self.n_solved / self.n_gold

    @property
    def solve_f1(self) -> float:
        return 2 * self.n_solved / (self.n_calls + self.n_gold)

    def as_dict(self) -> dict[str, float]:
        """The metrics under the reference's keys."""
        return {"solve_precision": self.solve_precision, "solve_rate": self.solve_rate, "solve_f1": self.solve_f1}
