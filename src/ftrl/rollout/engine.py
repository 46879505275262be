"""Multi-turn rollouts of many episodes at once, with the reference evaluation loop's semantics.

Per episode (bytedance/FTRL `Code/evaluation/evaluation_self.py`): up to `max_turns` assistant turns, stopping at
the first turn without a tool call; each turn's calls run in the episode's own runtime episode (so stateful
domains keep their state), their results are appended as tool messages, and each call may solve one pending
sub-answer of its tool. Unlike the reference, which runs one environment at a time, all active episodes share
one batched `generate` call per turn and one `call_batch` for their tools, and finished episodes are replaced
from the queue at once so the batch stays full.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.progress import Progress

from ftrl.env.record import Environment
from ftrl.reward import EpisodeScore, answer_verify
from ftrl.rollout.policy import Message, Policy
from ftrl.runtime import ToolRuntime

#: Prefix of the tool message the runtime returns when a call fails (the reference's spelling).
ERROR_PREFIX = "an error occured when call "


@dataclass
class RolloutConfig:
    """`batch_size` episodes are in flight at once (rows of one generate call)."""

    max_turns: int = 20
    batch_size: int = 16


@dataclass
class Checkpoint:
    """The state after a tool-calling turn: how many messages the history has and what is still unsolved."""

    turn: int
    n_messages: int
    unsolved_set: dict[str, list[str]]


@dataclass
class EpisodeResult:
    """One finished episode: every message, the reference metrics and what collection needs."""

    key: str
    env: Environment
    messages: list[Message]
    metrics: dict[str, float]
    correct: bool
    n_calls: int
    n_errors: int
    turns: int
    checkpoints: list[Checkpoint] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """The `episodes.jsonl` row (the reference's evaluation output plus our counters)."""
        return {
            "episode_id": self.key,
            "index": self.env.extra.get("index"),
            "data_source": self.env.data_source,
            "messages": self.messages,
            "metrics": self.metrics,
            "correct": self.correct,
            "n_calls": self.n_calls,
            "n_errors": self.n_errors,
            "turns": self.turns,
        }


EpisodeKwargs = Callable[[Environment], dict[str, Any]]


@dataclass
class _Active:
    key: str
    env: Environment
    episode: Any
    messages: list[Message]
    score: EpisodeScore
    n_errors: int = 0
    checkpoints: list[Checkpoint] = field(default_factory=list)


def run_rollouts(
    jobs: Iterable[tuple[str, Environment]],
    policy: Policy,
    runtime: ToolRuntime,
    config: RolloutConfig | None = None,
    episode_kwargs: EpisodeKwargs | None = None,
    progress: Progress | None = None,
    total: int | None = None,
) -> Iterator[EpisodeResult]:
    """Roll out `(key, environment)` jobs; yields each episode as soon as it ends (not in input order).

    `episode_kwargs(env)` gives the runtime episode's arguments (codes, and a domain's state for stateful
    environments); by default just the environment's codes.
    """
    config = config or RolloutConfig()
    kwargs_of = episode_kwargs or (lambda env: {"codes": env.codes})
    queue = deque(jobs)
    task = progress.add_task("episodes", total=total if total is not None else len(queue)) if progress else None
    active: list[_Active] = []
    while queue or active:
        while queue and len(active) < config.batch_size:
            key, env = queue.popleft()
            active.append(_start(key, env, runtime.episode(**kwargs_of(env))))
        replies = policy.generate([a.messages for a in active], [a.env.tools for a in active])
        _run_tools(active, replies, runtime)
        still: list[_Active] = []
        for item, reply in zip(active, replies):
            if reply.get("tool_calls") and item.score.n_turns < config.max_turns:
                still.append(item)
                continue
            item.episode.close()
            if progress is not None and task is not None:
                progress.advance(task)
            yield _finish(item)
        active = still


def _start(key: str, env: Environment, episode: Any) -> _Active:
    return _Active(
        key,
        env,
        episode,
        copy.deepcopy(env.messages),
        EpisodeScore.start(env.unsolved_set),
    )


def _run_tools(active: list[_Active], replies: list[Message], runtime: ToolRuntime) -> None:
    """Append each reply, run all replies' calls in one batch, append tool messages and update the scores."""
    requests = []
    for item, reply in zip(active, replies):
        item.messages.append(reply)
        for call in reply.get("tool_calls") or []:
            requests.append((item.episode, call["function"]["name"], call["function"]["arguments"]))
    outputs = iter(runtime.call_batch(requests))
    for item, reply in zip(active, replies):
        calls = reply.get("tool_calls") or []
        contents = [next(outputs) for _ in calls]
        for call, content in zip(calls, contents):
            item.messages.append({"role": "tool", "content": content, "tool_call_id": call["id"]})
            item.n_errors += content.startswith(f"{ERROR_PREFIX}{call['function']['name']}:")
        item.score.add_turn(reply, contents)
        if calls:
            remaining = copy.deepcopy(item.score.remaining)
            item.checkpoints.append(Checkpoint(item.score.n_turns, len(item.messages), remaining))


def _finish(item: _Active) -> EpisodeResult:
    text = next(
        (str(m.get("content") or "") for m in reversed(item.messages) if m.get("role") == "assistant"),
        "",
    )
    correct = bool(item.env.answer) and answer_verify(text, item.env.answer)
    return EpisodeResult(
        key=item.key,
        env=item.env,
        messages=item.messages,
        metrics=item.score.as_dict(),
        correct=correct,
        n_calls=item.score.n_calls,
        n_errors=item.n_errors,
        turns=item.score.n_turns,
        checkpoints=item.checkpoints,
    )
