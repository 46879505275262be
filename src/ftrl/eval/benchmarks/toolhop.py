"""ToolHop (Ye et al. 2025): multi-hop questions answered with locally executable tools.

Scored as the FTRL paper's `evaluation_toolhop.py` scores it. Three scenarios share the items:

- Direct: no tools, one reply;
- Mandatory: tools, and the prompt demands a tool call at every step and a final answer taken from a tool;
- Free: tools, the model decides.

With tools the model gets at most `max_turns` (9) replies; every call of a reply runs in the isolated runtime
and the first reply without a call ends the item. An item is correct when the last message is an assistant
reply with text and either that text, or the tool output right before it, contains the gold answer under the
reference matcher (`answer_verify`: gold split on ", ", lower-cased, commas removed, substring). Running out of
turns scores 0. The score of a scenario is the mean over items; the report also gives the mean of scenarios.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftrl.eval.benchmarks.common import (
    AgentSpec,
    Conversation,
    ResultLog,
    agent_for,
    mean,
    play_together,
    write_summary,
)
from ftrl.jsonl import DataError, read_records
from ftrl.reward.match import answer_verify
from ftrl.rollout.policy import Message
from ftrl.runtime.protocol import ToolRunner

SCENARIOS = ("Direct", "Mandatory", "Free")
MAX_TURNS = 9

# The reference prompts, verbatim (including the "final nswer" typo of the tool scenarios).
DIRECT_PROMPT = (
    "You will be asked a question, and should provide a short answer.\n"
    "If the answer is a date, format is as follows: YYYY-MM-DD (ISO standard)\n"
    "If the answer is a name, format it as follows: Firstname Lastname\n"
    "If the answer contains any number, format it as a number, not a word, and only output that number. "
    "Do not include leading 0s.\n\n"
    "Please provide the answer in the following format: <answer>your answer here</answer>\n"
    "Answer as short as possible.\nQuestion: {question}"
)
_TOOL_RULES = (
    "If the final answer is a date, format is as follows: YYYY-MM-DD (ISO standard)\n"
    "If the final nswer is a name, format it as follows: Firstname Lastname\n"
    "If the final answer contains any number, format it as a number, not a word, and only output that number. "
    "Do not include leading 0s.\n\n"
    "Please provide the final answer in the following format: <answer>final answer here</answer>\n"
    "Answer as short as possible.\nQuestion: {question}"
)
MANDATORY_PROMPT = (
    "You will be asked a question with some tools, and should provide a short final answer.\n"
    "Please note that you must call the tool at every step, you must not use your own knowledge. "
    "Your final answer must also be returned from the tool.\n" + _TOOL_RULES
)
FREE_PROMPT = "You will be asked a question with some tools, and should provide a short final answer.\n" + _TOOL_RULES
PROMPTS = {"Direct": DIRECT_PROMPT, "Mandatory": MANDATORY_PROMPT, "Free": FREE_PROMPT}

_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.MULTILINE)


@dataclass
class ToolHopItem:
    """One question with its tools (OpenAI schemas), their code by name, and the gold answer."""

    id: str
    question: str
    answer: str
    tools: list[dict[str, Any]]
    codes: dict[str, str]
    gold_calls: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any], index: int) -> ToolHopItem:
        """From a ToolHop row (`tools` maps sub-questions to schemas, `functions` is a list of sources); raises
        `ValueError` naming the field that is missing or malformed."""
        for name in ("question", "answer", "tools", "functions"):
            if name not in row:
                raise ValueError(f"field {name!r}: missing")
        tools = list(row["tools"].values()) if isinstance(row["tools"], dict) else row["tools"]
        if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
            raise ValueError("field 'tools': must map sub-questions to tool schemas (or list them)")
        if not isinstance(row["question"], str):
            raise ValueError("field 'question': must be a string")
        schemas = [tool if "function" in tool else {"type": "function", "function": dict(tool)} for tool in tools]
        codes = functions_to_codes(row["functions"])
        return cls(
            id=str(row.get("id", index)),
            question=row["question"],
            answer=str(row["answer"]),
            tools=schemas,
            codes=codes,
            gold_calls=[_gold_call(call, i, codes) for i, call in enumerate(row.get("gold_calls") or [])],
        )


def _gold_call(call: Any, index: int, codes: dict[str, str]) -> dict[str, Any]:
    """One gold call as an OpenAI tool call. The public conversions carry either such dicts, `{name, arguments}`
    dicts, or Python call strings (`f(a='x', b=2)`), which are parsed with `ast` (literals only, never run)."""
    name: Any
    arguments: Any
    if isinstance(call, str):
        name, arguments = _parse_call_string(call, codes)
    elif isinstance(call, dict):
        function = call.get("function", call)
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", function.get("parameters", {})) if isinstance(function, dict) else None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                arguments = None
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise ValueError(f"field 'gold_calls': call {index} needs a tool name and an arguments object")
    else:
        raise ValueError(f"field 'gold_calls': call {index} is a {type(call).__name__}, not a call string or object")
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


def _parse_call_string(text: str, codes: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """`f(a='x', b=2)` -> ("f", {"a": "x", "b": 2}); positional arguments are named by the tool's own signature."""
    import ast

    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ValueError("not a call of a named function")
        arguments = {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords if keyword.arg}
        if len(arguments) != len(node.keywords):
            raise ValueError("**kwargs are not supported")
        if node.args:
            names = _parameter_names(codes.get(node.func.id, ""), node.func.id)
            if len(node.args) > len(names):
                raise ValueError("more positional arguments than the tool's signature has")
            arguments.update(zip(names, (ast.literal_eval(arg) for arg in node.args), strict=False))
    except (SyntaxError, ValueError, TypeError, RecursionError) as error:
        raise ValueError(f"field 'gold_calls': cannot read the call {text[:120]!r}: {error}") from None
    return node.func.id, arguments


def _parameter_names(code: str, name: str) -> list[str]:
    import ast

    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return [a.arg for a in node.args.posonlyargs + node.args.args]
    return []


def functions_to_codes(functions: Sequence[str] | dict[str, str]) -> dict[str, str]:
    """Tool code by name. A list of sources is keyed by each source's first top-level `def`; when two sources
    define the same name the later one wins, as executing them one after another would."""
    if isinstance(functions, dict):
        return dict(functions)
    codes = {}
    for source in functions:
        match = _DEF.search(source)
        if match:
            codes[match.group(1)] = source
    return codes


def load_toolhop(path: str | Path, limit: int | None = None) -> list[ToolHopItem]:
    """Items of ToolHop's original JSON list or of a JSONL conversion (told apart by content, not by suffix);
    anything else is a `DataError` naming the file, the line (the item for a JSON list) and the field."""
    file = Path(path)
    items: list[ToolHopItem] = []
    for line, row in read_records(file, "ToolHop"):
        try:
            items.append(ToolHopItem.from_row(row, len(items)))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise DataError(file, line, None, f"not a ToolHop row: {error}") from None
    return items[:limit] if limit is not None else items


def first_messages(item: ToolHopItem, scenario: str) -> list[Message]:
    return [{"role": "user", "content": PROMPTS[scenario].format(question=item.question)}]


def answer_correct(messages: Sequence[Message], answer: str) -> bool:
    """The reference rule: the final assistant text, or the tool output just before it, contains the answer."""
    if not messages or messages[-1].get("role") != "assistant" or not messages[-1].get("content"):
        return False
    if answer_verify(messages[-1]["content"], answer):
        return True
    return len(messages) > 1 and messages[-2].get("role") == "tool" and answer_verify(messages[-2]["content"], answer)


def play_item(
    item: ToolHopItem, scenario: str, agent: AgentSpec, runtime: ToolRunner, max_turns: int = MAX_TURNS
) -> Conversation:
    """Play one item in one scenario (a `Conversation`); its result row holds the messages and correctness."""
    policy = agent_for(agent, item)
    messages = first_messages(item, scenario)
    if scenario == "Direct":
        messages.append((yield policy, messages, None))
    else:
        with runtime.episode(codes=item.codes) as episode:
            for _ in range(max_turns):
                reply = yield policy, messages, item.tools
                messages.append(reply)
                calls = reply.get("tool_calls") or []
                if not calls:
                    break
                outputs = episode.call_many([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
                messages += [
                    {"role": "tool", "content": output, "tool_call_id": call["id"]}
                    for call, output in zip(calls, outputs, strict=False)
                ]
    correct = answer_correct(messages, item.answer)
    return {
        "key": f"{scenario}/{item.id}",
        "scenario": scenario,
        "id": item.id,
        "answer": item.answer,
        "correct": float(correct),
        "turns": sum(m["role"] == "assistant" for m in messages),
        "messages": messages,
    }


def run_toolhop(
    items: Sequence[ToolHopItem],
    agent: AgentSpec,
    out_dir: str | Path,
    runtime: ToolRunner,
    scenarios: Sequence[str] = SCENARIOS,
    max_turns: int = MAX_TURNS,
    in_flight: int = 8,
) -> dict[str, Any]:
    """Run every (scenario, item) not yet in `out_dir/results.jsonl`, `in_flight` at a time, then write and
    return the summary."""
    with ResultLog(out_dir) as log:
        todo = [(s, item) for s in scenarios for item in items if not log.done(f"{s}/{item.id}")]
        log.expect(len(todo), "toolhop")
        play_together((play_item(item, s, agent, runtime, max_turns) for s, item in todo), log.add, in_flight)
        keys = {f"{s}/{item.id}" for s in scenarios for item in items}
        rows = [row for key, row in log.rows.items() if key in keys]
    summary = summarize(rows, scenarios)
    summary["max_turns"] = max_turns  # the protocol's unless overridden
    table = [["scenario", "items", "answer correctness (%)"]]
    table += [[s, summary["items"][s], summary["scores"][s]] for s in scenarios]
    table.append(["mean", sum(summary["items"].values()), summary["mean"]])
    write_summary(out_dir, summary, table, "ToolHop")
    return summary


def summarize(rows: Sequence[dict[str, Any]], scenarios: Sequence[str] = SCENARIOS) -> dict[str, Any]:
    """Answer correctness (percent) per scenario and the mean over scenarios."""
    scores = {s: 100 * mean(r["correct"] for r in rows if r["scenario"] == s) for s in scenarios}
    items = {s: sum(r["scenario"] == s for r in rows) for s in scenarios}
    return {"benchmark": "toolhop", "scores": scores, "items": items, "mean": mean(scores.values())}


@dataclass
class ToolHopOracle:
    """Plumbing check for one item: replays the item's `gold_calls` (one per turn) when it has any, then answers
    `<answer>gold</answer>`.

    ToolHop releases no gold call arguments (the sample's `gold_calls` are empty, and the arguments cannot be
    derived from `sub_task` reliably), so on such items this oracle simply answers directly: it validates the
    prompt -> reply -> scoring -> results path, not tool execution. Use `ToolHopOracle.for_item` as the agent.
    """

    item: ToolHopItem

    @classmethod
    def for_item(cls, item: ToolHopItem) -> ToolHopOracle:
        return cls(item)

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        replies: list[Message] = []
        for index, conversation in enumerate(conversations):
            done = sum(m.get("role") == "assistant" and bool(m.get("tool_calls")) for m in conversation)
            if tools is not None and tools[index] and done < len(self.item.gold_calls):
                replies.append({"role": "assistant", "content": "", "tool_calls": [self.item.gold_calls[done]]})
            else:
                replies.append(
                    {"role": "assistant", "content": f"<answer>{self.item.answer}</answer>", "tool_calls": None}
                )
        return replies
