"""Episode Solve-P/R/F1 over hand-written multi-turn trajectories."""

from __future__ import annotations

import json

import pytest

from ftrl.formats.calls import make_tool_call
from ftrl.reward import EpisodeScore, episode_metric, strict_verify

# The "Christianity" multi_hop environment of the shared sample, written out so this test needs no files.
UNSOLVED = {"historical_event_locator": ["Kenya"], "religion_demographics_explorer": ["Christianity"]}


def turn(*names: str, content: str = "") -> dict:
    calls = [make_tool_call(i, name, json.dumps({"q": "x"})) for i, name in enumerate(names)]
    return {"role": "assistant", "content": content, "tool_calls": calls or None}


def test_multi_turn_trajectory():
    episode = EpisodeScore.start(UNSOLVED)
    # turn 1: the right tool fails, a wrong tool prints the answer -> p=2, q=0
    first = turn("historical_event_locator", "river_locator")
    assert episode.add_turn(first, ["an error occured when call x", "Kenya"]) == []
    # turn 2: right tool, right answer -> p=3, q=1
    assert episode.add_turn(turn("historical_event_locator"), ["The event took place in Kenya."]) == [
        ("historical_event_locator", "Kenya")
    ]
    # turn 3: second hop -> p=4, q=2
    episode.add_turn(turn("religion_demographics_explorer"), ["Christianity is the main religion."])
    # turn 4: final answer, no call -> p stays 4
    episode.add_turn({"role": "assistant", "content": "Christianity", "tool_calls": None}, [])
    assert (episode.n_turns, episode.n_calls, episode.n_solved, episode.n_gold) == (4, 4, 2, 2)
    assert episode.as_dict() == pytest.approx(
        {"solve_precision": 2 / 4, "solve_rate": 2 / 2, "solve_f1": 2 * 2 / (4 + 2)}
    )
    assert episode.remaining == {"historical_event_locator": [], "religion_demographics_explorer": []}
    assert UNSOLVED["historical_event_locator"] == ["Kenya"]  # input not mutated


def test_no_calls_gives_precision_one():
    episode = EpisodeScore.start(UNSOLVED)
    episode.add_turn({"role": "assistant", "content": "I refuse.", "tool_calls": None}, [])
    assert episode.as_dict() == {"solve_precision": 1.0, "solve_rate": 0.0, "solve_f1": 0.0}  # p=0: 1.0; 0/2; 0/(0+2)


def test_matcher_choice_changes_episode_metrics():
    unsolved = {"historical_event_info_retriever": ["12", "2"]}
    message, outputs = turn("historical_event_info_retriever", "historical_event_info_retriever"), ["12", "12"]
    reference, strict = EpisodeScore.start(unsolved), EpisodeScore.start(unsolved, matcher=strict_verify)
    reference.add_turn(message, outputs)
    strict.add_turn(message, outputs)
    # reference: q=2, p=2, n=2 -> 2/2, 2/2, 4/4; strict: q=1 -> 1/2, 1/2, 2/4
    assert reference.as_dict() == pytest.approx({"solve_precision": 1.0, "solve_rate": 1.0, "solve_f1": 1.0})
    assert strict.as_dict() == pytest.approx({"solve_precision": 0.5, "solve_rate": 0.5, "solve_f1": 0.5})


def test_environment_without_sub_answers_is_rejected():
    with pytest.raises(ValueError, match="at least one gold sub-answer"):
        EpisodeScore.start({"tool": []})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("f1", 2 * 2 / (5 + 3)), ("r", 2 / 3), ("p", 2 / 5), ("pr", 2 * 2 / (5 * 3))],
)
def test_episode_metric_formulas(kind: str, expected: float) -> None:
    assert episode_metric(kind, n_solved=2, n_calls=5, n_gold=3) == pytest.approx(expected)


def test_episode_metric_agrees_with_episode_score_except_precision_without_calls() -> None:
    score = EpisodeScore.start({"t": ["a", "b"]})
    score.add_turn({"tool_calls": [make_tool_call(0, "t", "{}"), make_tool_call(1, "t", "{}")]}, ["a", "x"])
    assert score.solve_f1 == episode_metric("f1", score.n_solved, score.n_calls, score.n_gold)
    assert score.solve_rate == episode_metric("r", score.n_solved, score.n_calls, score.n_gold)
    assert score.solve_precision == episode_metric("p", score.n_solved, score.n_calls, score.n_gold)
    # an episode that calls nothing: the evaluation's Solve-P is 1, the training reward 0
    assert EpisodeScore.start({"t": ["a"]}).solve_precision == 1.0
    assert episode_metric("p", 0, 0, 1) == 0.0 and episode_metric("pr", 0, 0, 1) == 0.0
    with pytest.raises(ValueError, match="unknown reward kind"):
        episode_metric("f2", 0, 0, 1)
