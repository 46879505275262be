"""ToolHop: the reference prompts and correctness rule, and full runs with scripted agents through the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.eval.benchmarks.toolhop import (
    PROMPTS,
    ToolHopItem,
    ToolHopOracle,
    answer_correct,
    functions_to_codes,
    load_toolhop,
    run_toolhop,
)

runtime_module = pytest.importorskip("ftrl.runtime")
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "toolhop" / "sample.jsonl"


def sample_items() -> list[ToolHopItem]:
    if not SAMPLE.exists():
        pytest.skip(f"shared ToolHop sample not found at {SAMPLE}")
    return load_toolhop(SAMPLE)


CODE = "def lookup(name):\n    return {'Ada': 'Ada Lovelace, born 1815'}.get(name, 'unknown')\n\nprint(lookup('Ada'))\n"
ITEM = ToolHopItem(
    id="q1",
    question="When was Ada born?",
    answer="1815",
    tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}],
    codes={"lookup": CODE},
)


def call(name: str, arguments: dict, index: int = 0) -> dict:
    return {"id": f"c{index}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


class Scripted:
    """Replies from a fixed list, in order, whatever the conversation; records what it was shown."""

    def __init__(self, replies: list[dict]):
        self.replies, self.seen = list(replies), []

    def generate(self, conversations, tools=None):
        self.seen += [(c, None if tools is None else tools[k]) for k, c in enumerate(conversations)]
        return [self.replies.pop(0) for _ in conversations]


@pytest.fixture(scope="module")
def runtime():
    with runtime_module.ToolRuntime(runtime_module.RuntimeConfig(workers=1)) as tool_runtime:
        yield tool_runtime


def text(content: str) -> dict:
    return {"role": "assistant", "content": content, "tool_calls": None}


def test_prompts_are_the_reference_texts():
    assert PROMPTS["Direct"].format(question="Q?") == (
        "You will be asked a question, and should provide a short answer.\n"
        "If the answer is a date, format is as follows: YYYY-MM-DD (ISO standard)\n"
        "If the answer is a name, format it as follows: Firstname Lastname\n"
        "If the answer contains any number, format it as a number, not a word, and only output that number. "
        "Do not include leading 0s.\n\nPlease provide the answer in the following format: "
        "<answer>your answer here</answer>\nAnswer as short as possible.\nQuestion: Q?"
    )
    mandatory, free = PROMPTS["Mandatory"].format(question="Q?"), PROMPTS["Free"].format(question="Q?")
    assert "Please note that you must call the tool at every step" in mandatory
    assert "must call" not in free
    # the tool prompts differ only by the mandatory sentence, typo included
    sentence = (
        "Please note that you must call the tool at every step, you must not use your own knowledge. "
        "Your final answer must also be returned from the tool.\n"
    )
    assert mandatory.replace(sentence, "") == free
    assert "If the final nswer is a name" in free


@pytest.mark.parametrize(
    ("messages", "correct"),
    [
        ([{"role": "user", "content": "q"}, text("<answer>1,815</answer>")], True),  # commas removed
        ([{"role": "user", "content": "q"}, text("<answer>1816</answer>")], False),
        # the final text is wrong but the tool output right before it holds the answer
        ([{"role": "tool", "content": "Ada Lovelace, born 1815"}, text("I think so")], True),
        # an empty final text scores 0 even after a good tool output
        ([{"role": "tool", "content": "born 1815"}, text("")], False),
        # ended on a tool message (ran out of turns)
        ([text("x"), {"role": "tool", "content": "1815"}], False),
    ],
)
def test_answer_correct_rule(messages, correct):
    assert answer_correct(messages, "1815") is correct


def test_answer_with_parts_needs_every_part():
    assert answer_correct([text("Paris and Lyon")], "Lyon, Paris")
    assert not answer_correct([text("Paris")], "Lyon, Paris")


def test_functions_keyed_by_def_name_later_wins():
    codes = functions_to_codes(
        ["def a(x):\n    return 1\n", "import math\ndef b():\n    return 2\n", "def a():\n    return 3\n"]
    )
    assert sorted(codes) == ["a", "b"]
    assert codes["a"].endswith("return 3\n")


def test_sample_items_load():
    items = sample_items()
    assert [item.answer for item in items] == ["2", "2", "4", "al-Dawla", "99"]
    first = items[0]
    assert len(first.tools) == 7 and all(tool["type"] == "function" for tool in first.tools)
    assert "author_lookup" in first.codes


def test_last_tool_output_path_through_runtime(runtime, tmp_path):
    agent = Scripted(
        [
            {"role": "assistant", "content": "", "tool_calls": [call("lookup", {"name": "Ada"})]},
            text("She was born long ago."),
        ]
    )
    summary = run_toolhop([ITEM], agent, tmp_path, runtime, scenarios=["Free"])
    row = json.loads((tmp_path / "results.jsonl").read_text())
    assert row["messages"][2] == {"role": "tool", "content": "Ada Lovelace, born 1815", "tool_call_id": "c0"}
    assert row["correct"] == 1.0 and row["turns"] == 2
    assert summary["scores"]["Free"] == 100.0
    # the tools went to the model with the conversation
    assert agent.seen[0][1] == ITEM.tools


def test_running_out_of_turns_scores_zero(runtime, tmp_path):
    agent = Scripted([{"role": "assistant", "content": "", "tool_calls": [call("lookup", {"name": "Ada"})]}] * 3)
    summary = run_toolhop([ITEM], agent, tmp_path, runtime, scenarios=["Mandatory"], max_turns=3)
    assert summary["scores"]["Mandatory"] == 0.0
    assert agent.replies == []


def test_direct_has_no_tools_and_resume_skips_finished(runtime, tmp_path):
    other = ToolHopItem("q2", "2+2?", "4", ITEM.tools, ITEM.codes)
    agent = Scripted([text("<answer>1815</answer>"), text("<answer>5</answer>")])
    run_toolhop([ITEM, other], agent, tmp_path, runtime, scenarios=["Direct"])
    assert agent.seen[0][1] is None
    # second run: both items are in results.jsonl, so the agent is never asked again
    again = Scripted([])
    summary = run_toolhop([ITEM, other], again, tmp_path, runtime, scenarios=["Direct"])
    assert again.seen == []
    assert summary["scores"]["Direct"] == 50.0 and summary["items"]["Direct"] == 2
    assert "| Direct | 2 | 50.00 |" in (tmp_path / "summary.md").read_text()


def test_oracle_replays_gold_calls_then_answers(runtime, tmp_path):
    item = ToolHopItem(**{**ITEM.__dict__, "gold_calls": [call("lookup", {"name": "Ada"})]})
    summary = run_toolhop([item], ToolHopOracle.for_item, tmp_path, runtime)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert summary["mean"] == 100.0
    by_scenario = {row["scenario"]: row for row in rows}
    assert by_scenario["Direct"]["turns"] == 1
    assert by_scenario["Free"]["messages"][2]["content"] == "Ada Lovelace, born 1815"


def test_oracle_on_sample_scores_full_marks(runtime, tmp_path):
    items = sample_items()
    summary = run_toolhop(items, ToolHopOracle.for_item, tmp_path, runtime)
    assert summary["scores"] == {"Direct": 100.0, "Mandatory": 100.0, "Free": 100.0}
    assert json.loads((tmp_path / "summary.json").read_text())["mean"] == 100.0


# ---------------------------------------------------------------------------------------------------- data shapes

RAW = {
    "id": "r1",
    "question": "When was Ada born?",
    "answer": "1815",
    "functions": [CODE],
    "tools": {"Who is Ada?": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
}
GOLD_SHAPES = {
    "openai-dict": [{"type": "function", "function": {"name": "lookup", "arguments": '{"name": "Ada"}'}}],
    "name-arguments-dict": [{"name": "lookup", "arguments": {"name": "Ada"}}],
    "call-string": ["lookup(name='Ada')"],
    "positional-call-string": ["lookup('Ada')"],
}


@pytest.mark.parametrize("gold", GOLD_SHAPES.values(), ids=GOLD_SHAPES.keys())
@pytest.mark.parametrize("layout", ["jsonl", "json-list"])
def test_public_shapes_load_and_the_oracle_replays_them(runtime, tmp_path, gold, layout):
    row = {**RAW, "gold_calls": gold}
    path = tmp_path / "toolhop.jsonl"  # the layout is told by content, whatever the suffix says
    path.write_text(json.dumps(row) + "\n" if layout == "jsonl" else json.dumps([row], indent=1))
    [item] = load_toolhop(path)
    assert json.loads(item.gold_calls[0]["function"]["arguments"]) == {"name": "Ada"}
    summary = run_toolhop([item], ToolHopOracle.for_item, tmp_path / "out", runtime, scenarios=["Mandatory"])
    assert summary["scores"]["Mandatory"] == 100.0
    result = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert result["messages"][2]["content"] == "Ada Lovelace, born 1815"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "no ToolHop records"),
        (b"\xff\xfe\x00\x01binary", "not UTF-8"),
        (b'{"answer": "1"}\n', "field 'question': missing"),
        (b"[1, 2]", "must be an object"),
        (b"[{broken", "not a JSON list"),
        (json.dumps({**RAW, "gold_calls": ["__import__('os').system('true')"]}).encode(), "cannot read the call"),
        (
            json.dumps({**RAW, "gold_calls": ["lookup(name=open('/etc/passwd').read())"]}).encode(),
            "cannot read the call",
        ),
        (json.dumps({**RAW, "gold_calls": [7]}).encode(), "not a call string or object"),
    ],
    ids=["empty", "binary", "missing-field", "list-of-numbers", "broken-json", "call-with-code", "code-in-args", "int"],
)
def test_other_shapes_are_refused_by_file_line_and_field(tmp_path, content, fragment):
    from ftrl.jsonl import DataError

    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=str(path)) as error:
        load_toolhop(path)
    assert fragment in str(error.value)
