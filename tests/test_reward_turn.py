"""Per-turn reward on the shared reference environments, with hand-written tool outputs (no tool runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.env.io import read_envs
from ftrl.formats import parse_hermes
from ftrl.formats.calls import make_tool_call
from ftrl.reward import strict_verify, turn_reward


@pytest.fixture
def load_row(sample_path: Path):
    """Environment state by gold answer, as a dict with a parsed `unsolved_set`."""
    envs = {env.answer: env for env in read_envs(sample_path)}

    def load(answer: str) -> dict:
        env = envs[answer]
        return {"unsolved_set": env.unsolved_set, "solve_rate": env.solve_rate, "answer": env.answer}

    return load


def turn(*names: str, content: str = "") -> dict:
    calls = [make_tool_call(i, name, json.dumps({"i": i})) for i, name in enumerate(names)]
    return {"role": "assistant", "content": content, "tool_calls": calls or None}


def score(row: dict, message: dict, outputs: list[str], kind: str = "f1", **kwargs):
    return turn_reward(message, outputs, row["unsolved_set"], row["solve_rate"], row["answer"], kind=kind, **kwargs)


# Row "29" (parallel_single_hop): {"library_catalog_query": ["30 million"], "historical_data_retriever": ["1 million"]}
PARALLEL = ("library_catalog_query", "historical_data_retriever")
PARALLEL_OUTPUTS = ["The library holds 30 million books.", "Back then it held 1 million books."]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("f1", 4 / 3), ("p", 1.0), ("r", 2.0), ("pr", 2.0)],  # q=2, p=2: 2*2/(2+1), 2/2, 2, 2*2/2
)
def test_parallel_calls_solve_both_sub_answers(kind, expected, load_row):
    row = load_row("29")
    result = score(row, turn(*PARALLEL), PARALLEL_OUTPUTS, kind)
    assert (result.n_calls, result.n_solved, result.branch) == (2, 2, "tool_calls")
    assert result.reward == pytest.approx(expected)
    assert result.solved == [("library_catalog_query", "30 million"), ("historical_data_retriever", "1 million")]
    assert result.remaining == {"library_catalog_query": [], "historical_data_retriever": []}
    assert row["unsolved_set"]["library_catalog_query"] == ["30 million"]  # input not mutated


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("f1", 1.0), ("p", 2 / 3), ("r", 2.0), ("pr", 4 / 3)],  # q=2, p=3: 4/4, 2/3, 2, 4/3
)
def test_wrong_tool_gets_no_credit_even_when_its_output_holds_the_answer(kind, expected, load_row):
    row = load_row("29")
    message = turn(*PARALLEL, "religious_text_info")  # not a key of the unsolved set
    result = score(row, message, [*PARALLEL_OUTPUTS, "30 million and 1 million"], kind)
    assert (result.n_calls, result.n_solved) == (3, 2)
    assert result.reward == pytest.approx(expected)


# Row "10" (parallel_single_hop): {"historical_event_info_retriever": ["12", "2"]} — one tool, two sub-answers.
RETRIEVER = "historical_event_info_retriever"


def test_one_tool_serves_two_sub_answers_in_either_order(load_row):
    row = load_row("10")
    # output "2": first pending "12" is not in "2", so "2" is removed; output "12" then matches "12"
    result = score(row, turn(RETRIEVER, RETRIEVER), ["2", "12"])
    assert result.solved == [(RETRIEVER, "2"), (RETRIEVER, "12")]
    assert result.reward == pytest.approx(4 / 3)  # 2*2/(2+1)
    assert result.remaining == {RETRIEVER: []}


def test_repeating_the_same_call_double_counts_with_reference_matcher_only(load_row):
    row = load_row("10")
    message, outputs = turn(RETRIEVER, RETRIEVER), ['{"casualties": "12"}'] * 2
    reference = score(row, message, outputs)
    # call 1 removes "12"; call 2: pending ["2"], and "2" is a substring of "12" -> solved again
    assert reference.solved == [(RETRIEVER, "12"), (RETRIEVER, "2")]
    assert reference.reward == pytest.approx(4 / 3)  # 2*2/(2+1)
    strict = score(row, message, outputs, matcher=strict_verify)
    assert strict.solved == [(RETRIEVER, "12")] and strict.remaining == {RETRIEVER: ["2"]}
    assert strict.reward == pytest.approx(2 / 3)  # 2*1/(2+1)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("f1", 2 / 3), ("p", 0.5), ("r", 1.0), ("pr", 0.5)],  # q=1, p=2: 2/3, 1/2, 1, 1/2
)
def test_repeated_call_removes_an_answer_only_once(kind, expected, load_row):
    row = load_row("Michel Barnier")  # {"political_event_search": ["Michel Barnier"]}
    output = "Michel Barnier was the first French prime minister to lose a motion of no-confidence since 1962."
    result = score(row, turn("political_event_search", "political_event_search"), [output, output], kind)
    assert (result.n_calls, result.n_solved) == (2, 1)
    assert result.reward == pytest.approx(expected)


def test_failed_call_counts_as_a_call(load_row):
    row = load_row("Michel Barnier")
    error = "an error occured when call political_event_search: missing argument"
    result = score(row, turn("political_event_search"), [error])
    assert (result.n_calls, result.n_solved, result.reward) == (1, 0, 0.0)


def test_outputs_must_match_calls(load_row):
    with pytest.raises(ValueError, match="2 tool calls but 1 tool outputs"):
        score(load_row("29"), turn(*PARALLEL), PARALLEL_OUTPUTS[:1])
    with pytest.raises(ValueError, match="unknown reward kind"):
        score(load_row("29"), turn(*PARALLEL), PARALLEL_OUTPUTS, kind="f2")


# --- turns without a parsed tool call -------------------------------------------------------------------------


def test_empty_turn(load_row):
    row = load_row("Michel Barnier")
    for content in ("", None):
        result = score(row, {"role": "assistant", "content": content, "tool_calls": None}, [])
        assert (result.reward, result.branch) == (-0.5, "empty")


def test_malformed_json_call_is_skipped_and_penalised_before_the_answer_check(load_row):
    row = load_row("Michel Barnier")
    message = parse_hermes(
        'Michel Barnier <tool_call>\n{"name": "political_event_search", "arguments": {\n</tool_call>'
    )
    assert message["tool_calls"] is None  # the only call is malformed, so the whole text is content
    result = score(row, message, [])
    assert (result.reward, result.branch) == (-0.3, "malformed")  # although the gold answer is in the text
    stray = {"role": "assistant", "content": "<tool_parsed_response>x", "tool_calls": None}
    assert score(row, stray, []).reward == -0.3


def test_malformed_call_next_to_a_valid_one_only_lowers_the_count(load_row):
    row = load_row("Michel Barnier")
    text = (
        '<tool_call>\n{"name": "political_event_search", "arguments": {}}\n</tool_call><tool_call>\n{oops\n</tool_call>'
    )
    message = parse_hermes(text)
    result = score(row, message, ["Michel Barnier resigned."])
    assert (result.n_calls, result.n_solved, result.reward) == (1, 1, 1.0)  # 2*1/(1+1)


def test_final_answer_while_sub_answers_pending(load_row):
    hula = load_row("Hula")  # 7 pending sub-answers
    result = score(hula, {"role": "assistant", "content": "The local dance is the HULA.", "tool_calls": None}, [])
    assert (result.reward, result.branch) == (pytest.approx(1 / 8), "answer")  # 1/(1+7)
    yes = load_row("yes")
    state = {**yes, "answer": "1,420"}  # commas are removed from both sides before the substring test
    result = score(state, {"role": "assistant", "content": "It is 1420.", "tool_calls": None}, [])
    assert result.reward == pytest.approx(1 / 9)  # 8 pending: 1/(1+8)


def test_all_solved_and_fallthrough(load_row):
    row = load_row("Michel Barnier")
    solved_state = {**row, "unsolved_set": {"political_event_search": []}, "solve_rate": 1.0}
    no_answer = {"role": "assistant", "content": "I am done.", "tool_calls": None}
    assert (score(solved_state, no_answer, []).reward, score(solved_state, no_answer, []).branch) == (0.5, "all_solved")
    with_answer = {"role": "assistant", "content": "It was Michel Barnier.", "tool_calls": None}
    assert score(solved_state, with_answer, []).reward == 1.0  # answer check comes first: 1/(1+0)
    assert (score(row, no_answer, []).reward, score(row, no_answer, []).branch) == (0.0, "none")
    assert turn_reward(no_answer, [], row["unsolved_set"], 0.0, None).reward == 0.0  # no gold answer given
