"""Score one generated response end to end, as training and `ftrl score` do: clean, parse, run the calls, reward.

Tools run through a runtime (`ftrl.runtime.ToolRuntime`) in a fresh episode per response, so a response never
sees another one's tool state; reward arithmetic stays in the pure `turn_reward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftrl.formats import clean_response, get_format
from ftrl.reward.spec import PAPER_REWARD, RewardSpec, TurnState
from ftrl.reward.turn import TurnScore, turn_reward
from ftrl.runtime.protocol import ToolRunner


@dataclass(frozen=True)
class ScoredResponse:
    """A response's reward with everything it was computed from."""

    reward: float
    message: dict[str, Any]
    tool_outputs: list[str]
    turn: TurnScore

    def to_row(self) -> dict[str, Any]:
        """A JSON row for score files: the reward, which branch fired, and the parsed calls with their outputs."""
        return {
            "reward": self.reward,
            "branch": self.turn.branch,
            "n_calls": self.turn.n_calls,
            "n_solved": self.turn.n_solved,
            "tool_calls": self.message["tool_calls"] or [],
            "tool_outputs": self.tool_outputs,
        }


def score_response(
    response_text: str, state: TurnState, runtime: ToolRunner, spec: RewardSpec = PAPER_REWARD
) -> ScoredResponse:
    """Reward of one raw model response in one state (reference cleaning and parsing), scored as `spec` says.

    A state's empty gold answer means it has none (`Environment` stores a missing answer as ""): passed on as
    `None`, since the reference's "" would be found in any text (`turn_reward`).
    """
    message = get_format(spec.fmt).parse(clean_response(response_text))
    calls = message["tool_calls"] or []
    outputs: list[str] = []
    if calls:
        with runtime.episode(state.codes) as episode:
            outputs = episode.call_many([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
    turn = turn_reward(
        message, outputs, state.unsolved_set, state.solve_rate, state.answer or None, kind=spec.kind, matcher=spec.match
    )
    return ScoredResponse(turn.reward, message, outputs, turn)
