"""ftrl's tools inside verl's multi-turn tool agent loop (`ftrl export verl --multi-turn`), for verl 0.9.1.

verl's `ToolAgentLoop` takes one tool list per run from `multi_turn.tool_config_path`, one schema per name, and
its schema model drops JSON-schema fields it does not know (defaults, array items, nested properties). ftrl
environments each bring their own tools, and procedural builds reuse a name with different schemas, so
`FtrlAgentLoop` (registered as `ftrl_tool_agent` by `ftrl_agent_loop.yaml`) is verl's own loop with the row's
tools: every episode gets one `FtrlTool` per tool of its environment, with the schema exactly as ftrl renders
it (`extra_info.tools`) and the environment's code and gold sub-answers (`extra_info.state`).

verl runs each parsed call as `create` -> `execute(instance_id, arguments, agent_data=...)` -> `release`, the
calls of one turn concurrently. ftrl scores a turn as a whole, so the first call of a turn runs *all* of the
turn's calls in one fresh episode of ftrl's isolated `ToolRuntime` and scores the turn with
`ftrl.reward.turn_reward` against the sub-answers still owed; every call then returns its own output. The turn's
reward is the step reward of its first call (0 for the others); the episode's counts go to
`agent_data.extra_fields["ftrl"]`, which verl hands to the reward function in `extra_info`, where
`episode_reward` turns them into the episode's Solve metric.

This module imports verl, so it is only importable where `ftrl[verl]` is installed.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from ftrl.reward import episode_metric, pending_count, turn_reward
from ftrl.runtime import RuntimeConfig, ToolRuntime

_runtime: ToolRuntime | None = None
_runtime_lock = threading.Lock()


def _get_runtime(timeout_s: float) -> ToolRuntime:
    """One `ToolRuntime` per process, started on first use (verl runs agent loops in its worker processes)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = ToolRuntime(RuntimeConfig(timeout_s=timeout_s))
            atexit.register(_runtime.close)
        return _runtime


def episode_reward(info: dict[str, Any], kind: str = "f1") -> float:
    """The episode's Solve metric (`ftrl.reward.episode_metric`) from the counts `FtrlTool` left in
    `extra_info["ftrl"]` (no call: q = p = 0)."""
    counts = info.get("ftrl") or {}
    return episode_metric(kind, counts.get("n_solved", 0), counts.get("n_calls", 0), int(info["n_gold"]))


class ExactToolSchema(OpenAIFunctionToolSchema):
    """A tool schema that dumps exactly as given: verl renders prompts from `model_dump`, and its own model would
    drop fields the environment's schema has (the model must see what `ftrl eval` shows it)."""

    raw: dict[str, Any] = {}

    @classmethod
    def of(cls, schema: dict[str, Any]) -> ExactToolSchema:
        return cls.model_validate({**schema, "raw": schema})

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return json.loads(json.dumps(self.raw))


@dataclass
class EpisodeTools:
    """What the tools of one episode share: its environment, settings and the turns being run."""

    codes: dict[str, str]
    unsolved_set: dict[str, list[str]]
    answer: str | None
    kind: str = "f1"
    timeout_s: float = 10.0
    turns: dict[int, asyncio.Future] = field(default_factory=dict)


class FtrlTool(BaseTool):
    """One tool of one episode, run in ftrl's runtime and scored with ftrl's per-turn reward."""

    def __init__(self, episode: EpisodeTools, tool_schema: ExactToolSchema):
        # BaseTool.__init__ prints every schema: one tool set per episode would flood the log
        self.config = {"kind": episode.kind, "timeout_s": episode.timeout_s}
        self.tool_schema = tool_schema
        self.name = tool_schema.function.name
        self.episode = episode
        self._rewards: dict[str, float] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        instance_id = instance_id or uuid4().hex
        self._rewards[instance_id] = 0.0
        return instance_id, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict]:
        """This call's output from its turn (run and scored once per turn); the turn's reward on its first call."""
        agent_data = kwargs["agent_data"]
        turns, key = self.episode.turns, agent_data.assistant_turns
        first = key not in turns
        if first:  # no await before this point: the turn's other calls see the future
            turns[key] = asyncio.get_running_loop().create_future()
            try:
                turns[key].set_result(await asyncio.to_thread(self._run_turn, agent_data))
            except Exception as error:  # the turn's other calls must fail the same way
                turns[key].set_exception(error)
                raise
        result = await turns[key]
        index = _claim(result, self.name, parameters)
        self._rewards[instance_id] = result["reward"] if first else 0.0
        return (
            ToolResponse(text=result["outputs"][index]),
            self._rewards[instance_id],
            {"turn_reward": result["reward"]},
        )

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """The step reward `execute` gave this instance: its turn's reward if it ran the turn, else 0."""
        return self._rewards.get(instance_id, 0.0)

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._rewards.pop(instance_id, None)

    def _run_turn(self, agent_data: Any) -> dict[str, Any]:
        """Run every call of the last assistant message and score the turn; updates the episode's counts."""
        episode, message = self.episode, agent_data.messages[-1]
        calls = [
            {"function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
            for c in message.get("tool_calls") or []
        ]
        counts = agent_data.extra_fields.setdefault(
            "ftrl", {"remaining": episode.unsolved_set, "n_calls": 0, "n_solved": 0, "turn_rewards": []}
        )
        with _get_runtime(episode.timeout_s).episode(episode.codes) as runtime:
            outputs = runtime.call_many([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
        n_gold = pending_count(episode.unsolved_set)
        solve_rate = 1 - pending_count(counts["remaining"]) / n_gold if n_gold else 1.0
        turn = turn_reward(
            {"content": message.get("content"), "tool_calls": calls},
            outputs,
            counts["remaining"],
            solve_rate,
            episode.answer,
            kind=episode.kind,
        )
        counts.update(
            remaining=turn.remaining,
            n_calls=counts["n_calls"] + turn.n_calls,
            n_solved=counts["n_solved"] + turn.n_solved,
        )
        counts["turn_rewards"].append(turn.reward)
        return {"calls": calls, "outputs": outputs, "reward": turn.reward, "claimed": set()}


def _claim(result: dict[str, Any], name: str, parameters: dict[str, Any]) -> int:
    """Index of the first call of the turn with this name and these arguments not yet answered."""
    for index, call in enumerate(result["calls"]):
        arguments = call["function"]["arguments"]
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        if index not in result["claimed"] and call["function"]["name"] == name and arguments == parameters:
            result["claimed"].add(index)
            return index
    raise KeyError(f"no call of {name!r} with {parameters!r} in the turn")


def episode_tools(extra_info: dict[str, Any]) -> list[FtrlTool]:
    """The tools of one `episodes.parquet` row (`extra_info` as `ftrl export verl` writes it)."""
    state = json.loads(extra_info["state"])
    episode = EpisodeTools(
        state["codes"],
        state["unsolved_set"],
        state["answer"] or None,
        kind=state.get("kind", "f1"),
        timeout_s=float(state.get("timeout_s", 10.0)),
    )
    return [FtrlTool(episode, ExactToolSchema.of(schema)) for schema in json.loads(extra_info["tools"])]


class FtrlAgentLoop(ToolAgentLoop):
    """verl's `ToolAgentLoop` with the row's own tools (`episode_tools`) instead of one list for every row."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        tools = episode_tools(kwargs["extra_info"])
        self.tools = {tool.name: tool for tool in tools}
        self.tool_schemas = [tool.tool_schema.model_dump() for tool in tools]
        return await super().run(sampling_params, **kwargs)
