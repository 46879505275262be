"""`ftrl.env.gold.gold_turns`: the one definition of an environment's gold turns, in both groupings."""

from __future__ import annotations

import pytest

from ftrl.env import Environment, gold_turns


def call(name: str) -> dict:
    return {"id": name, "type": "function", "function": {"name": name, "arguments": "{}"}}


def env_with(gold_calls: list, sub_questions: list[dict] | None = None) -> Environment:
    extra = {"gold_calls": gold_calls, **({"sub_questions": sub_questions} if sub_questions is not None else {})}
    return Environment([{"role": "user", "content": "q"}], [], {}, {"a": ["x"]}, extra=extra)


def names(turns: list[list[dict]]) -> list[list[str]]:
    return [[c["function"]["name"] for c in turn] for turn in turns]


def test_stored_order_is_one_call_per_turn_and_waves_group_independent_calls() -> None:
    # a, b independent; c needs a and b; d needs c
    subs = [{"depends_on": []}, {"depends_on": []}, {"depends_on": [0, 1]}, {"depends_on": [2]}]
    env = env_with([call("a"), call("b"), call("c"), call("d")], subs)
    assert names(gold_turns(env)) == [["a"], ["b"], ["c"], ["d"]]  # what the oracle replays
    assert names(gold_turns(env, parallel=True)) == [["a", "b"], ["c"], ["d"]]  # what SFT trains on


def test_waves_without_dependencies_are_a_chain_and_stored_groups_are_kept() -> None:
    assert names(gold_turns(env_with([call("a"), call("b")]), parallel=True)) == [["a"], ["b"]]
    grouped = env_with([[call("a"), call("b")], call("c")])
    assert names(gold_turns(grouped)) == names(gold_turns(grouped, parallel=True)) == [["a", "b"], ["c"]]


def test_no_gold_calls_is_an_error() -> None:
    with pytest.raises(ValueError, match="no gold_calls"):
        gold_turns(env_with([]))
