"""Multi-turn rollouts of many episodes at once, with the reference evaluation loop's semantics.

Per episode (bytedance/FTRL `Code/evaluation/evaluation_self.py`): up to `max_turns` assistant turns, stopping at
the first turn without a tool call; each turn's calls run in the episode's own runtime episode (so stateful
domains keep their state), their results are appended as tool messages, and each call may solve one pending
sub-answer of its tool. Unlike the reference, which runs one environment at a time, many episodes are in flight
at once. With a `StreamingPolicy` (a local model) an episode whose turn ends runs its tools and submits its next
turn while the others are still decoding (continuous batching); other policies answer all active episodes in
one `generate` call per turn, with one `call_batch` for their tools. Either way finished episodes are replaced
from the queue at once so the batch stays full.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.progress import Progress

from ftrl.env.record import Environment
from ftrl.reward import EpisodeScore, answer_verify
from ftrl.rollout.policy import Message, Policy, StreamingPolicy
from ftrl.runtime import TOOL_ERROR_PREFIX
from ftrl.runtime.protocol import ToolEpisode, ToolRunner


@dataclass(kw_only=True)
class RolloutConfig:
    """`batch_size` episodes are in flight at once; `continuous` lets a streaming policy take each episode's next
    turn as soon as its last one ends instead of waiting for the whole batch's turn."""

    max_turns: int = 20
    batch_size: int = 16
    continuous: bool = True


@dataclass
class StatePoint:
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
    state_points: list[StatePoint] = field(default_factory=list)

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
    episode: ToolEpisode
    messages: list[Message]
    score: EpisodeScore
    n_errors: int = 0
    state_points: list[StatePoint] = field(default_factory=list)


def run_rollouts(
    jobs: Iterable[tuple[str, Environment]],
    policy: Policy,
    runtime: ToolRunner,
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

    def start_more(running: int) -> list[_Active]:
        """Episodes from the queue for the free places beside `running` ones."""
        started: list[_Active] = []
        while queue and running + len(started) < config.batch_size:
            key, env = queue.popleft()
            started.append(_start(key, env, runtime.episode(**kwargs_of(env))))
        return started

    def after_turn(items: list[_Active], replies: list[Message]) -> Iterator[_Active | EpisodeResult]:
        """Run the turn's tools; yields each item that goes on and the result of each that ended."""
        _run_tools(items, replies, runtime)
        for item, reply in zip(items, replies, strict=False):
            if reply.get("tool_calls") and item.score.n_turns < config.max_turns:
                yield item
                continue
            item.episode.close()
            if progress is not None and task is not None:
                progress.advance(task)
            yield _finish(item)

    if config.continuous and isinstance(policy, StreamingPolicy):
        yield from _continuous(policy, start_more, after_turn)
        return
    active: list[_Active] = []
    while queue or active:
        active += start_more(len(active))
        replies = policy.generate([a.messages for a in active], [a.env.tools for a in active])
        still: list[_Active] = []
        for outcome in after_turn(active, replies):
            if isinstance(outcome, EpisodeResult):
                yield outcome
            else:
                still.append(outcome)
        active = still


def _continuous(
    policy: StreamingPolicy,
    start_more: Callable[[int], list[_Active]],
    after_turn: Callable[[list[_Active], list[Message]], Iterator[_Active | EpisodeResult]],
) -> Iterator[EpisodeResult]:
    """Continuous batching: every episode whose turn ended goes on (or is replaced from the queue) right away."""
    active: dict[Hashable, _Active] = {}

    def submit(items: list[_Active]) -> None:
        for item in items:
            active[item.key] = item
            policy.submit(item.key, item.messages, item.env.tools)

    submit(start_more(0))
    while active:
        finished = policy.step()
        if not finished:
            continue
        items = [active.pop(key) for key, _ in finished]
        going_on = []
        for outcome in after_turn(items, [reply for _, reply in finished]):
            if isinstance(outcome, EpisodeResult):
                policy.release(outcome.key)
                yield outcome
            else:
                going_on.append(outcome)
        submit(going_on)
        submit(start_more(len(active)))


def _start(key: str, env: Environment, episode: Any) -> _Active:
    return _Active(
        key,
        env,
        episode,
        copy.deepcopy(env.messages),
        EpisodeScore.start(env.unsolved_set),
    )


def _run_tools(active: list[_Active], replies: list[Message], runtime: ToolRunner) -> None:
    """Append each reply, run all replies' calls in one batch, append tool messages and update the scores."""
    requests = []
    for item, reply in zip(active, replies, strict=False):
        item.messages.append(reply)
        for call in reply.get("tool_calls") or []:
            requests.append((item.episode, call["function"]["name"], call["function"]["arguments"]))
    outputs = iter(runtime.call_batch(requests))
    for item, reply in zip(active, replies, strict=False):
        calls = reply.get("tool_calls") or []
        contents = [next(outputs) for _ in calls]
        for call, content in zip(calls, contents, strict=False):
            item.messages.append({"role": "tool", "content": content, "tool_call_id": call["id"]})
            item.n_errors += content.startswith(f"{TOOL_ERROR_PREFIX} {call['function']['name']}:")
        item.score.add_turn(reply, contents)
        if calls:
            remaining = copy.deepcopy(item.score.remaining)
            item.state_points.append(StatePoint(item.score.n_turns, len(item.messages), remaining))


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
        state_points=item.state_points,
    )
