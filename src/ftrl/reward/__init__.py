"""The verifiable reward: matching tool outputs to gold sub-answers, per-turn rewards and episode metrics.

Defaults reproduce the reference (bytedance/FTRL); `strict` matching is opt-in. See docs/reward.md.
"""

from ftrl.reward.episode import EPISODE_METRICS, EpisodeScore, episode_metric
from ftrl.reward.match import MATCHERS, Matcher, answer_verify, get_matcher, strict_verify
from ftrl.reward.score import ScoredResponse, score_response
from ftrl.reward.solve import pending_count, solve_calls
from ftrl.reward.spec import PAPER_REWARD, FormatName, MatcherName, RewardKind, RewardSpec, RewardState, TurnState
from ftrl.reward.turn import REWARD_KINDS, TurnScore, turn_reward

__all__ = [
    "EPISODE_METRICS",
    "MATCHERS",
    "PAPER_REWARD",
    "REWARD_KINDS",
    "EpisodeScore",
    "FormatName",
    "Matcher",
    "MatcherName",
    "RewardKind",
    "RewardSpec",
    "RewardState",
    "ScoredResponse",
    "TurnScore",
    "TurnState",
    "answer_verify",
    "episode_metric",
    "get_matcher",
    "pending_count",
    "score_response",
    "solve_calls",
    "strict_verify",
    "turn_reward",
]
