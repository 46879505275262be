"""RoTBench: TS/PI/CF under both matching rules on crafted answers, loading all noise levels, a full run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.eval.benchmarks.common import LookupPolicy
from ftrl.eval.benchmarks.rotbench import (
    LEVELS,
    RoTItem,
    gold_policy,
    item_from_row,
    load_rotbench,
    run_rotbench,
    score_ftrl,
    score_rotbench,
)

FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "rotbench"


def answer(tool: str, parameters: dict) -> str:
    return f"Thought:\nAction: {tool}\nAction Input: {json.dumps(parameters)}"


# noisy names as in the medium/heavy levels: the gold answer uses the renamed tool and keys
GOLD = [answer("stcudorPthgilf", {"destination": "Los Angeles", "origin": "Sydney"}), answer("search", {"q": "x"})]
TOOLS = ["stcudorPthgilf", "search", "ksa_resu", "hsinif"]


def scores(ts: float, pi: float, cf: float) -> dict[str, float]:
    return {"TS": ts, "PI": pi, "CF": cf}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer("stcudorPthgilf", {"origin": "Sydney", "destination": "Los Angeles"}), scores(1, 1, 1)),
        # the un-noised name is wrong: the model must use the name the prompt gives
        (answer("flightProducts", {"destination": "Los Angeles", "origin": "Sydney"}), scores(0, 0, 0)),
        (answer("stcudorPthgilf", {"destination": "Los Angeles"}), scores(1, 0, 0)),
        (answer("stcudorPthgilf", {"destination": "LA", "origin": "Sydney"}), scores(1, 1, 0)),
        # FTRL compares the multiset of values only, so swapped values still fill content correctly
        (answer("stcudorPthgilf", {"destination": "Sydney", "origin": "Los Angeles"}), scores(1, 1, 1)),
        # the second acceptable answer
        ('Thought: easy\nAction: search\nAction Input: {"q": "x"}\n', scores(1, 1, 1)),
        ("Action: search\nAction Input: not json", scores(0, 0, 0)),
        ('Action: search\nAction Input: ["x"]', scores(0, 0, 0)),
        ("I would search for x.", scores(0, 0, 0)),
    ],
)
def test_ftrl_rule(response, expected):
    assert score_ftrl(response, GOLD) == expected


def test_ftrl_rule_accepts_empty_input_and_stops_on_unhashable_values():
    assert score_ftrl(answer("get_today_date", {}), [answer("get_today_date", {})]) == scores(1, 1, 1)
    gold = [answer("t", {"ids": [1, 2]}), answer("t", {"ids": "1,2"})]
    # Counter over a list value raises in the reference; its try/except ends the scan before the 2nd answer
    assert score_ftrl(answer("t", {"ids": "1,2"}), gold) == scores(1, 1, 0)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (answer("stcudorPthgilf", {"origin": "Sydney", "destination": "Los Angeles"}), scores(1, 1, 1)),
        # RoTBench compares key-value pairs, so swapped values are wrong there
        (answer("stcudorPthgilf", {"destination": "Sydney", "origin": "Los Angeles"}), scores(1, 1, 0)),
        # a correct call with an empty input scores nothing under RoTBench's own script
        (answer("search", {}), scores(0, 0, 0)),
    ],
)
def test_rotbench_rule(response, expected):
    assert score_rotbench(response, GOLD, TOOLS) == expected


def test_rotbench_rule_finish_and_none_values():
    gold = [answer("hsinif", {"answer": "The capital is Paris."}), answer("search", {"q": "x", "page": "None"})]
    # "finish" maps to the renamed finish tool, and any answer text fills it
    assert score_rotbench(answer("finish", {"answer": "Paris"}), gold, TOOLS) == scores(1, 1, 1)
    # keys whose gold value is "None" are left out of the value comparison
    assert score_rotbench(answer("search", {"q": "x", "page": "3"}), gold, TOOLS) == scores(1, 1, 1)
    assert score_ftrl(answer("search", {"q": "x", "page": "3"}), gold) == scores(1, 1, 0)


def test_native_row_conversion():
    row = {
        "conversations": [
            {"from": "system", "value": 'Tools:\n[{"name": "a"}, {"name": "ask"}, {"name": "fin"}]\n\nLet\'s Begin!'},
            {"from": "user", "value": "hi"},
            {"from": "assistant", "value": "Thought:\nAction: a\nAction Input: {}"},
            {"from": "function", "value": "result"},
            {"from": "assistant", "value": ['Thought:\nAction: fin\nAction Input: {"answer": "x"}']},
        ],
        "scenario": "TG",
    }
    item = item_from_row(row, "clean", 3)
    assert item.key == "clean/3" and item.scenario == "TG"
    assert [m["role"] for m in item.messages] == ["system", "user", "assistant", "user"]
    assert item.tool_names == ["a", "ask", "fin"]
    assert len(item.answers) == 1


def test_fixture_levels_load_and_gold_scores_full_marks(tmp_path):
    if not FOLDER.exists():
        pytest.skip(f"shared RoTBench sample not found at {FOLDER}")
    items = load_rotbench(FOLDER)
    assert [item.level for item in items[::6]] == list(LEVELS)
    summary = run_rotbench(items, gold_policy(items), tmp_path)
    assert summary["mean"] == {"TS": 100.0, "PI": 100.0, "CF": 100.0}
    assert summary["items"] == {level: 6 for level in LEVELS}
    # RoTBench's own rule gives 0 to the four gold answers whose input is {}
    strict = run_rotbench(items, gold_policy(items), tmp_path / "strict", rule="rotbench")
    assert strict["levels"]["clean"]["TS"] == pytest.approx(400 / 6)
    assert strict["mean"]["CF"] == pytest.approx(100 * 26 / 30)


def test_run_scores_each_level_and_resumes(tmp_path):
    system = {"role": "system", "content": 'Tools: [{"name": "search"}]'}
    items = [
        RoTItem("clean/0", "clean", [system, {"role": "user", "content": "q0"}], [answer("search", {"q": "a"})]),
        RoTItem("clean/1", "clean", [system, {"role": "user", "content": "q1"}], [answer("search", {"q": "b"})]),
        RoTItem("heavy/0", "heavy", [system, {"role": "user", "content": "q0"}], [answer("search", {"q": "a"})]),
    ]
    policy = LookupPolicy(default=answer("search", {"q": "a"}))
    summary = run_rotbench(items, policy, tmp_path, batch_size=2)
    assert summary["levels"]["clean"] == {"TS": 100.0, "PI": 100.0, "CF": 50.0}
    assert summary["levels"]["heavy"]["CF"] == 100.0
    assert summary["mean"]["CF"] == 75.0

    class Never:
        def generate(self, conversations, tools=None):
            raise AssertionError("finished items must not run again")

    assert run_rotbench(items, Never(), tmp_path) == summary
