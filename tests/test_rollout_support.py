"""Shared helpers for the rollout, sample and eval tests: hand-made environments and a scripted policy."""

from __future__ import annotations

import json
from typing import Any

from ftrl.env.record import Environment
from ftrl.formats.calls import assistant_message, make_tool_call

CODES = {
    "capital_of": "def capital_of(country):\n    return {'France': 'Paris', 'Japan': 'Tokyo'}[country]\n",
    "population_of": (
        "def population_of(city):\n"
        "    return {'city': city, 'population': {'Paris': '2,100,000', 'Tokyo': '14,000,000'}[city]}\n"
    ),
    "unused_tool": "def unused_tool(x):\n    return 'nothing'\n",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]},
        },
    }
    for name, arg in (("capital_of", "country"), ("population_of", "city"), ("unused_tool", "x"))
]


def call(name: str, index: int = 0, **arguments: Any) -> dict[str, Any]:
    return make_tool_call(index, name, json.dumps(arguments))


def make_env(country: str = "France", scenario: str = "multi_hop", gold: bool = True) -> Environment:
    """A two-hop environment: capital of `country`, then that city's population."""
    city = {"France": "Paris", "Japan": "Tokyo"}[country]
    population = {"Paris": "2,100,000", "Tokyo": "14,000,000"}[city]
    extra = (
        {
            "gold_calls": [
                call("capital_of", country=country),
                call("population_of", city=city),
            ]
        }
        if gold
        else {}
    )
    return Environment(
        messages=[
            {
                "role": "user",
                "content": f"Question: how many people live in the capital of {country}?",
            }
        ],
        tools=TOOLS,
        codes=CODES,
        unsolved_set={"capital_of": [city], "population_of": [population]},
        answer=population,
        data_source=f"self/{scenario}",
        split="test",
        extra=extra,
    )


class ScriptedPolicy:
    """Replies from a per-question script: `scripts[question][turn]` is an assistant message.

    Records the batch size of every call so tests can check that episodes run together.
    """

    def __init__(self, scripts: dict[str, list[dict[str, Any]]]):
        self.scripts = scripts
        self.batches: list[int] = []

    def generate(self, conversations: list[list[dict]], tools: list[list[dict]] | None = None) -> list[dict]:
        self.batches.append(len(conversations))
        replies = []
        for messages in conversations:
            script = self.scripts[messages[0]["content"]]
            turn = sum(1 for m in messages if m["role"] == "assistant")
            replies.append(script[turn] if turn < len(script) else assistant_message("I give up.", None))
        return replies


def say(text: str) -> dict[str, Any]:
    return assistant_message(text, None)


def calls(*tool_calls: dict[str, Any], text: str = "") -> dict[str, Any]:
    return assistant_message(text, [dict(c, id=f"{c['id']}_{i}") for i, c in enumerate(tool_calls)])


class StreamingScriptedPolicy(ScriptedPolicy):
    """The scripted replies as a `StreamingPolicy`: a turn of question `q` takes `steps[q]` calls of `step` to
    finish, so episodes end their turns at different times. Records `(step, key, turn)` of every submission."""

    def __init__(self, scripts: dict[str, list[dict[str, Any]]], steps: dict[str, int]):
        super().__init__(scripts)
        self.steps = steps
        self.clock = 0
        self.running: dict[Any, tuple[int, dict]] = {}
        self.submitted: list[tuple[int, Any, int]] = []
        self.released: list[Any] = []

    def submit(self, key: Any, messages: list[dict], tools: list[dict] | None) -> None:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        self.submitted.append((self.clock, key, turn))
        question = messages[0]["content"]
        self.running[key] = (self.clock + self.steps[question], self.generate([messages])[0])

    def step(self) -> list[tuple[Any, dict]]:
        self.clock += 1
        done = [key for key, (due, _) in self.running.items() if due <= self.clock]
        return [(key, self.running.pop(key)[1]) for key in done]

    def release(self, key: Any) -> None:
        self.released.append(key)
