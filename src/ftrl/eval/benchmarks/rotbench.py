"""RoTBench (Ye et al. 2024): tool selection and calling under five levels of noise in tool documentation.

Each item is a ReAct-style conversation (tools listed in the system prompt); the model answers with
`Thought: ... Action: <tool> Action Input: <JSON object>` and is compared with a list of acceptable gold
answers. Three nested scores per item, in percent, per level (clean, slight, medium, heavy, union) and their mean:

- TS (tool selection): some gold answer names the same tool;
- PI (parameter identification): ... and has the same parameter keys;
- CF (content filling): ... and the same values.

Two matching rules are implemented because the two reference scripts differ:

`ftrl` (default, the FTRL paper's `evaluation_rotbench.py`): the tool is the text between the first
`Action: ` and the next `Action Input: `, stripped; the input is `json.loads` of everything after the first
`Action Input: ` and must be a dict (anything else scores 0/0/0). Gold answers are scanned in order: a matching
tool sets TS, equal key sets then set PI, and equal multisets of *values* (`Counter(values)`, so values swapped
between keys still count) set CF and stop the scan. Unhashable values (lists, dicts) make `Counter` raise in the
reference, which ends the scan with the scores reached so far; reproduced.

`rotbench` (RoTBench's own `Code/Evaluation/evaluate.py`): the tool is sliced from `Action:` + 8 characters to
`Action Input:` (one trailing newline dropped), the input from `Action Input:` + 14 characters; an empty or
non-object input scores 0/0/0 (so a correct call with `{}` scores nothing there); predicting `finish` counts as
the (possibly renamed) last tool of the list; CF compares key-value pairs exactly after dropping keys whose gold
value is the string "None", and any key/value filling of the finish and ask-to-user tools (last and second to
last tools of the list) is accepted once TS and PI hold.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrl.eval.benchmarks.common import LookupPolicy, ResultLog, batched, mean, text_of, write_summary
from ftrl.jsonl import DataError, read_records
from ftrl.rollout.policy import Message, Policy

LEVELS = ("clean", "slight", "medium", "heavy", "union")
RULES = ("ftrl", "rotbench")
_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "function": "user"}


@dataclass
class RoTItem:
    """One conversation (all turns but the answer), the acceptable answers, and the tool list of its prompt."""

    key: str
    level: str
    messages: list[Message]
    answers: list[str]
    scenario: str = ""

    @property
    def tool_names(self) -> list[str]:
        """Tool names in prompt order (RoTBench's rule uses the last two: ask-to-user and finish)."""
        system = self.messages[0]["content"]
        start = system.find("[")
        try:
            tools = json.loads(system[start : system.rindex("]") + 1])
        except ValueError:
            return []
        return [tool.get("name", "") for tool in tools]


def item_from_row(row: dict[str, Any], level: str, index: int) -> RoTItem:
    """From RoTBench's format (`conversations` of `from`/`value`, the last value a list of answers; `function`
    observations become user turns) or FTRL's (`messages` + `answer`)."""
    if "conversations" in row:
        *history, last = row["conversations"]
        messages = [{"role": _ROLES[turn["from"]], "content": turn["value"]} for turn in history]
        answers = last["value"] if isinstance(last["value"], list) else [last["value"]]
    else:
        messages, answers = list(row["messages"]), list(row["answer"])
    return RoTItem(f"{level}/{index}", level, messages, answers, row.get("scenario", ""))


def find_level_file(folder: Path, level: str) -> Path | None:
    """`<level>.json` (RoTBench's `Data/First_Turn/`) or any JSON whose name has `_<level>` / `<level>_` in it."""
    exact = folder / f"{level}.json"
    if exact.exists():
        return exact
    matches = sorted(p for p in folder.glob("*.json") if level in p.stem.lower().replace("-", "_").split("_"))
    return matches[0] if matches else None


def load_rotbench(path: str | Path, levels: Sequence[str] = LEVELS, limit: int | None = None) -> list[RoTItem]:
    """Items of every level found in a folder (a single file is read as the level its name says)."""
    source = Path(path)
    files = (
        {level: find_level_file(source, level) for level in levels}
        if source.is_dir()
        else {next((level for level in levels if level in source.stem.lower()), source.stem): source}
    )
    items = []
    for level, file in files.items():
        if file is None:
            continue
        records = read_records(file, "RoTBench")
        for index, (line, row) in enumerate(records[:limit] if limit else records):
            try:
                items.append(item_from_row(row, level, index))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise DataError(
                    file,
                    line,
                    None,
                    f"not a RoTBench row ({type(error).__name__}: {error}); expected "
                    "`conversations` of from/value turns, or `messages` and `answer`",
                ) from None
    if not items:
        raise DataError(source, None, None, f"no RoTBench level files ({', '.join(levels)}) found or none has rows")
    return items


def score_ftrl(text: str, answers: Sequence[str]) -> dict[str, float]:
    """TS/PI/CF (0 or 1) with the FTRL script's parsing and matching (module docstring)."""
    scores = {"TS": 0.0, "PI": 0.0, "CF": 0.0}
    predicted = _split_ftrl(text)
    if predicted is None:
        return scores
    tool, parameters = predicted
    for answer in answers:
        gold = _split_ftrl(answer)
        if gold is None or gold[0] != tool:
            continue
        gold_parameters = gold[1]
        scores["TS"] = 1.0
        if gold_parameters.keys() ^ parameters.keys():
            continue
        scores["PI"] = 1.0
        try:
            same_values = Counter(gold_parameters.values()) == Counter(parameters.values())
        except TypeError:  # unhashable values: the reference's try/except ends the scan here
            break
        if same_values:
            scores["CF"] = 1.0
            break
    return scores


def _split_ftrl(text: str) -> tuple[str, dict[str, Any]] | None:
    try:
        tool = text.split("Action: ")[1].split("Action Input: ")[0].strip()
        parameters = json.loads(text.split("Action Input: ")[1].strip())
    except (IndexError, ValueError):
        return None
    return (tool, parameters) if isinstance(parameters, dict) else None


def score_rotbench(text: str, answers: Sequence[str], tool_names: Sequence[str]) -> dict[str, float]:
    """TS/PI/CF (0 or 1) with RoTBench's own parsing and matching (module docstring)."""
    scores = {"TS": 0.0, "PI": 0.0, "CF": 0.0}
    predicted = _split_rotbench(text)
    if predicted is None or not isinstance(predicted[1], dict) or not predicted[1]:
        return scores
    finish = tool_names[-1] if tool_names else "finish"
    ask = tool_names[-2] if len(tool_names) > 1 else "ask_to_user"
    tool, parameters = predicted
    for answer in answers:
        gold = _split_rotbench(answer)
        if gold is None:
            continue
        gold_tool, gold_parameters = gold
        if gold_tool == finish and tool == "finish":
            tool = gold_tool
        if gold_tool != tool:
            continue
        scores["TS"] = 1.0
        if gold_parameters.keys() != parameters.keys():
            continue
        scores["PI"] = 1.0
        kept = [key for key, value in gold_parameters.items() if value != "None"]
        if gold_tool in (finish, ask) or {k: gold_parameters[k] for k in kept} == {k: parameters[k] for k in kept}:
            scores["CF"] = 1.0
            break
    return scores


def _split_rotbench(text: str) -> tuple[str, Any] | None:
    action_at, input_at = text.find("Action:"), text.find("Action Input:")
    tool = text[action_at + 8 : input_at]
    tool = tool.removesuffix("\n")
    try:
        return tool, json.loads(text[input_at + 14 :])
    except ValueError:
        return None


def score(text: str, item: RoTItem, rule: str = "ftrl") -> dict[str, float]:
    if rule == "ftrl":
        return score_ftrl(text, item.answers)
    if rule == "rotbench":
        return score_rotbench(text, item.answers, item.tool_names)
    raise ValueError(f"unknown RoTBench rule {rule!r}; known: {', '.join(RULES)}")


def run_rotbench(
    items: Sequence[RoTItem],
    policy: Policy,
    out_dir: str | Path,
    rule: str = "ftrl",
    batch_size: int = 8,
) -> dict[str, Any]:
    """Answer every item not yet in `out_dir/results.jsonl` (no tools offered: the tools are in the prompt)."""
    with ResultLog(out_dir) as log:
        pending = [item for item in items if not log.done(item.key)]
        log.expect(len(pending), "rotbench")
        for batch in batched(pending, batch_size):
            replies = policy.generate([item.messages for item in batch], None)
            for item, reply in zip(batch, replies, strict=False):
                text = text_of(reply).strip()
                log.add(
                    {
                        "key": item.key,
                        "level": item.level,
                        "scenario": item.scenario,
                        "response": text,
                        **score(text, item, rule),
                    }
                )
        keys = {item.key for item in items}
        rows = [row for key, row in log.rows.items() if key in keys]
    summary = summarize(rows, rule)
    table = [["level", "items", "TS", "PI", "CF"]]
    table += [[level, summary["items"][level], *summary["levels"][level].values()] for level in summary["levels"]]
    table.append(["mean", sum(summary["items"].values()), *summary["mean"].values()])
    write_summary(out_dir, summary, table, f"RoTBench (rule: {rule})")
    return summary


def summarize(rows: Sequence[dict[str, Any]], rule: str = "ftrl") -> dict[str, Any]:
    """TS/PI/CF in percent per level present, and their mean over levels."""
    present = [level for level in LEVELS if any(r["level"] == level for r in rows)]
    present += sorted({r["level"] for r in rows} - set(present))
    levels = {
        level: {m: 100 * mean(r[m] for r in rows if r["level"] == level) for m in ("TS", "PI", "CF")}
        for level in present
    }
    return {
        "benchmark": "rotbench",
        "rule": rule,
        "items": {level: sum(r["level"] == level for r in rows) for level in present},
        "levels": levels,
        "mean": {m: mean(scores[m] for scores in levels.values()) for m in ("TS", "PI", "CF")},
    }


def gold_policy(items: Sequence[RoTItem]) -> LookupPolicy:
    """Answers every item with its first acceptable gold answer (scores 100/100/100 under the `ftrl` rule)."""
    policy = LookupPolicy()
    for item in items:
        policy.add(item.messages, item.answers[0])
    return policy
