"""What decides a response's reward, as one object passed whole (verifiers' `Rubric` is the model).

`RewardSpec` names the per-turn reward kind, the sub-answer matcher and the tool-call format; `TurnState` is what a
state contributes (its tool code, the sub-answers still owed, its solve rate and the gold answer). `ftrl score`,
`ftrl train` and the verl reward module of `ftrl export verl` all score through `score_response(text, state,
runtime, spec)`, so a new reward knob is added here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ftrl.formats import FORMATS
from ftrl.reward.match import MATCHERS, Matcher, get_matcher
from ftrl.reward.turn import REWARD_KINDS
from ftrl.settings import setting

#: Per-turn reward kinds (`ftrl.reward.turn.REWARD_KINDS`): f1 is the paper's default.
RewardKind = Literal["f1", "p", "r", "pr"]
#: Sub-answer matchers (`ftrl.reward.match.MATCHERS`): reference reproduces bytedance/FTRL, strict is opt-in.
MatcherName = Literal["reference", "strict"]
#: Tool-call formats (`ftrl.formats.FORMATS`).
FormatName = Literal["hermes", "llama31"]


class TurnState(Protocol):
    """What scoring reads from a state; `ftrl.env.Environment` is one."""

    @property
    def codes(self) -> Mapping[str, str]: ...

    @property
    def unsolved_set(self) -> Mapping[str, Sequence[str]]: ...

    @property
    def solve_rate(self) -> float: ...

    @property
    def answer(self) -> str | None: ...


@dataclass(frozen=True)
class RewardState:
    """A `TurnState` from plain values (the verl reward module reads them from a row's `extra_info`)."""

    codes: Mapping[str, str]
    unsolved_set: Mapping[str, Sequence[str]]
    solve_rate: float
    answer: str | None


@dataclass(frozen=True, kw_only=True)
class RewardSpec:
    """How a response is scored: `kind` of per-turn reward, sub-answer `matcher`, tool-call format `fmt`."""

    kind: RewardKind = setting("f1", "Per-turn reward: f1 (Solve-F1, the paper's default), p, r or pr.")
    matcher: MatcherName = setting(
        "reference",
        "Sub-answer and final-answer matcher: reference (bytedance/FTRL's exactly) or strict (numbers compare as "
        "numbers; a final answer stuffed with candidates earns nothing).",
    )
    fmt: FormatName = setting("hermes", "Tool-call format the policy writes: hermes or llama31.")

    def __post_init__(self) -> None:
        for name, value, known in (
            ("reward", self.kind, REWARD_KINDS),
            ("matcher", self.matcher, MATCHERS),
            ("format", self.fmt, FORMATS),
        ):
            if value not in known:
                raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")

    @property
    def match(self) -> Matcher:
        return get_matcher(self.matcher)


#: The paper's reward: Solve-F1 per turn, the reference matcher, hermes tool calls.
PAPER_REWARD = RewardSpec()
