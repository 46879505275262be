"""`score_response` glue: cleaning, parsing and reward, with a stand-in runtime that records what it was asked."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from ftrl.reward import RewardSpec, RewardState, score_response

UNSOLVED = {"historical_event_info_retriever": ["12", "2"]}
CODES = {"historical_event_info_retriever": "def historical_event_info_retriever(event_name): ..."}


class ScriptedRuntime:
    """Returns fixed outputs by tool name and records episodes and calls."""

    def __init__(self, outputs: dict[str, str]):
        self.outputs, self.episodes, self.calls = outputs, [], []

    @contextmanager
    def episode(self, codes):
        self.episodes.append(dict(codes))
        yield self

    def call_many(self, calls):
        self.calls.extend(calls)
        return [self.outputs[name] for name, _ in calls]


def tool_call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def score(text: str, runtime: ScriptedRuntime, **spec):
    state = RewardState(codes=CODES, unsolved_set=UNSOLVED, solve_rate=0.0, answer="10")
    return score_response(text, state, runtime, RewardSpec(**spec))


def test_response_is_cleaned_parsed_run_and_rewarded():
    runtime = ScriptedRuntime({"historical_event_info_retriever": "12"})
    text = tool_call("historical_event_info_retriever", {"event_name": "explosion at Prüm"}) + "<|im_end|>\n"
    result = score(text, runtime)
    assert runtime.episodes == [CODES]
    assert runtime.calls == [("historical_event_info_retriever", '{"event_name": "explosion at Prüm"}')]
    assert result.tool_outputs == ["12"]
    assert result.reward == pytest.approx(1.0)  # q=1, p=1: 2*1/(1+1)
    assert result.turn.remaining == {"historical_event_info_retriever": ["2"]}
    assert result.message["tool_calls"][0]["function"]["name"] == "historical_event_info_retriever"


def test_matcher_and_kind_are_passed_through():
    runtime = ScriptedRuntime({"historical_event_info_retriever": "12"})
    text = tool_call("historical_event_info_retriever", {"event_name": "a"}) * 2
    assert score(text, runtime, kind="r").reward == 2.0  # reference: "12" then "2" (inside "12") -> q=2
    assert score(text, runtime, kind="r", matcher="strict").reward == 1.0  # strict: only "12" -> q=1


def test_llama31_format():
    runtime = ScriptedRuntime({"historical_event_info_retriever": "2 deaths"})
    text = '{"name": "historical_event_info_retriever", "parameters": {"event_name": "Kemi"}}<|eot_id|>'
    assert score(text, runtime, fmt="llama31", kind="p").reward == 1.0  # q=1, p=1: 1/1


def test_no_call_never_opens_an_episode():
    runtime = ScriptedRuntime({})
    result = score("The difference is 10.<|im_end|>", runtime)
    assert runtime.episodes == [] and result.tool_outputs == []
    assert (result.reward, result.turn.branch) == (pytest.approx(1 / 3), "answer")  # 1/(1+2 pending)


def test_reward_spec_choices_are_the_registries_and_unknown_values_are_refused():
    from typing import get_args

    from ftrl.formats import FORMATS
    from ftrl.reward import MATCHERS, REWARD_KINDS, FormatName, MatcherName, RewardKind

    assert set(get_args(RewardKind)) == set(REWARD_KINDS)
    assert set(get_args(MatcherName)) == set(MATCHERS)
    assert set(get_args(FormatName)) == set(FORMATS)
    for bad, message in (
        ({"kind": "f2"}, "unknown reward 'f2'"),
        ({"matcher": "x"}, "unknown matcher"),
        ({"fmt": "xml"}, "unknown format"),
    ):
        with pytest.raises(ValueError, match=message):
            RewardSpec(**bad)


def test_empty_gold_answer_means_none():
    # "" would be a substring of any text (the reference's quirk); a state's empty answer is no answer
    runtime = ScriptedRuntime({})
    state = RewardState(codes=CODES, unsolved_set=UNSOLVED, solve_rate=0.0, answer="")
    assert score_response("anything at all", state, runtime).turn.branch == "none"
