"""Typed records for tool-use environments in the FTRL reference format.

A reference row stores `tools`, `codes` and `unsolved_set` as JSON *strings*; in memory they are parsed
values. `to_row` writes them back with the reference's own serialisation (`json.dumps(..., ensure_ascii=False)`),
so a reference file read and written again is byte-identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Columns of the reference format, in the reference's order.
REFERENCE_COLUMNS = ("messages", "tools", "codes", "unsolved_set", "solve_rate", "data_source", "split", "answer")
#: Columns stored as JSON strings in the reference format.
JSON_STRING_COLUMNS = ("tools", "codes", "unsolved_set")
#: Scenario types of the paper; `data_source` is `self/<scenario>` for its own environments.
SCENARIOS = ("single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop")


def dumps(value: Any) -> str:
    """Serialise like the reference does (default separators, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Environment:
    """One environment (or one trajectory state): a conversation, tools with code, and the answers still owed.

    `extra` holds every column that is not part of the reference format (for example `index`, `episode_id`,
    `gold_calls`, `domain`), so unknown columns survive a read/write round trip in their original order.
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    codes: dict[str, str]
    unsolved_set: dict[str, list[str]]
    solve_rate: float = 0.0
    answer: str = ""
    data_source: str = ""
    split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The first user message (the question of a raw environment)."""
        for message in self.messages:
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""

    @property
    def scenario(self) -> str:
        """The scenario part of `data_source` (`self/multi_hop` -> `multi_hop`)."""
        return self.data_source.rsplit("/", 1)[-1]

    @property
    def tool_names(self) -> list[str]:
        return [tool_name(schema) for schema in self.tools]

    @property
    def pending_count(self) -> int:
        """Number of gold sub-answers still to be produced."""
        return sum(len(answers) for answers in self.unsolved_set.values())

    @property
    def domain(self) -> str | None:
        """Name of the shared stateful domain this environment runs in, if any."""
        return self.extra.get("domain")

    @property
    def gold_calls(self) -> list[dict[str, Any]] | None:
        """Gold tool calls in order (OpenAI format), when the environment carries its gold trajectory."""
        return self.extra.get("gold_calls")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Environment:
        """Build from a reference row; JSON-string columns may also arrive already parsed."""
        values = {name: row[name] for name in REFERENCE_COLUMNS if name in row}
        for name in JSON_STRING_COLUMNS:
            if isinstance(values.get(name), str):
                values[name] = json.loads(values[name])
        extra = {key: value for key, value in row.items() if key not in REFERENCE_COLUMNS}
        return cls(
            messages=list(values.get("messages") or []),
            tools=list(values.get("tools") or []),
            codes=dict(values.get("codes") or {}),
            unsolved_set={k: list(v) for k, v in (values.get("unsolved_set") or {}).items()},
            solve_rate=float(values.get("solve_rate", 0.0)),
            answer="" if values.get("answer") is None else str(values["answer"]),
            data_source=str(values.get("data_source", "")),
            split=str(values.get("split", "test")),
            extra=extra,
        )

    def to_row(self) -> dict[str, Any]:
        """The reference row: JSON-string columns serialised, extras after the reference columns."""
        row: dict[str, Any] = {
            "messages": self.messages,
            "tools": dumps(self.tools),
            "codes": dumps(self.codes),
            "unsolved_set": dumps(self.unsolved_set),
            "solve_rate": self.solve_rate,
            "data_source": self.data_source,
            "split": self.split,
            "answer": self.answer,
        }
        row.update(self.extra)
        return row


def tool_name(schema: dict[str, Any]) -> str:
    """Name of an OpenAI tool schema (`{"type": "function", "function": {"name": ...}}` or a bare function)."""
    function = schema.get("function", schema)
    return str(function.get("name", ""))


@dataclass
class Domain:
    """Tools, code, rules and an initial database shared by many environments (tau-bench style).

    Environments name their domain in `extra["domain"]` instead of copying megabytes of state per row; tool
    functions receive the episode's copy of the state as keyword `state_kwarg` and may change it.
    """

    name: str
    tools: list[dict[str, Any]]
    codes: dict[str, str]
    state: dict[str, Any]
    rules: str = ""
    state_kwarg: str = "data"

    @classmethod
    def from_dir(cls, path: str | Path, name: str | None = None) -> Domain:
        """Load a domain folder: `tools.json`, `codes.json`, optional `wiki.md`, and one JSON file per table."""
        folder = Path(path)
        tools = json.loads((folder / "tools.json").read_text(encoding="utf-8"))
        codes = json.loads((folder / "codes.json").read_text(encoding="utf-8"))
        rules_file = folder / "wiki.md"
        state = {
            table.stem: json.loads(table.read_text(encoding="utf-8"))
            for table in sorted(folder.glob("*.json"))
            if table.name not in ("tools.json", "codes.json")
        }
        rules = rules_file.read_text(encoding="utf-8") if rules_file.exists() else ""
        return cls(name=name or folder.name, tools=tools, codes=codes, state=state, rules=rules)
