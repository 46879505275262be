"""Episode metrics for evaluation (reference `Code/evaluation/evaluation_self.py`), accumulated turn by turn.

With p tool calls over the whole episode, n gold sub-answers at the start and q of them solved:
Solve-P = q/p (1.0 when no call was made), Solve-R = q/n, Solve-F1 = 2q/(p+n). Which answers a turn solves is
decided by `solve_calls`, the same rule the training reward uses. `episode_metric` gives the same formulas as an
episode-level training reward (verl's multi-turn export), where an episode without calls earns 0, not 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftrl.reward.match import Matcher, answer_verify
from ftrl.reward.solve import pending_count, solve_calls

#: `(q, p, n) -> metric` with p calls, n gold sub-answers and q solved, by reward kind: f1 = 2q/(p+n),
#: r = q/n, p = q/p and pr = q*q/(p*n); p and pr are 0 without calls (a reward must not pay for calling nothing).
EPISODE_METRICS: dict[str, Callable[[int, int, int], float]] = {
    "f1": lambda q, p, n: 2 * q / (p + n),
    "r": lambda q, p, n: q / n,
    "p": lambda q, p, n: q / p if p else 0.0,
    "pr": lambda q, p, n: q * q / (p * n) if p else 0.0,
}


def episode_metric(kind: str, n_solved: int, n_calls: int, n_gold: int) -> float:
    """The episode's Solve metric of `kind` (`EPISODE_METRICS`), as a training reward."""
    if kind not in EPISODE_METRICS:
        raise ValueError(f"unknown reward kind {kind!r}")
    return EPISODE_METRICS[kind](n_solved, n_calls, n_gold)


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
        """q/p; 1.0 when no call was made (the reference's evaluation, unlike `episode_metric("p", ...)`)."""
        return self.n_solved / self.n_calls if self.n_calls else 1.0

    @property
    def solve_rate(self) -> float:
        return EPISODE_METRICS["r"](self.n_solved, self.n_calls, self.n_gold)

    @property
    def solve_f1(self) -> float:
        return EPISODE_METRICS["f1"](self.n_solved, self.n_calls, self.n_gold)

    def as_dict(self) -> dict[str, float]:
        """The metrics under the reference's keys."""
        return {"solve_precision": self.solve_precision, "solve_rate": self.solve_rate, "solve_f1": self.solve_f1}
