"""Multi-turn rollouts of many episodes at once, with the reference evaluation loop's semantics.

Per episode (bytedance/FTRL `Code/evaluation/evaluation_self.py`): up to `max_turns` assistant turns, stopping at
the first turn without a tool call; each turn's calls run in the episode's own runtime episode (so stateful
domains keep their state), their results are appended as tool messages, and each call may solve one pending
sub-answer of its tool. Unlike the reference, which runs one environment at a time, many episodes are in flight
at once. With a `StreamingPolicy` (a local model) an episode whose turn ends runs its tools and submits its next
turn while the others are still decoding (continuous batching); other policies answer all active episodes in
one `generate` call per turn, with one `call_batch` for their tools. Either way finished episodes are replaced
from the queue at once so the batch stays full.

A fault that belongs to one episode (a tool output or a server reply that is not valid Unicode, a reply the
server refused or malformed, an environment that cannot start) ends that episode with `error` set, keeping what
it did before; the other episodes go on. Faults of the whole run (the server unreachable) still stop it.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.progress import Progress

from ftrl.env.record import Environment
from ftrl.reward import EpisodeScore
from ftrl.reward.match import final_answer_verify, get_matcher
from ftrl.rollout.policy import Message, Policy, StreamingPolicy
from ftrl.runtime import TOOL_ERROR_PREFIX
from ftrl.runtime.protocol import ToolEpisode, ToolRunner

#: Key of a policy's reply that stands for a fault of that one conversation (the text says what happened).
REPLY_ERROR = "error"


def unicode_fault(value: Any, what: str) -> str | None:
    """Why `value` (a string, or a message of strings) cannot be written as UTF-8, or None: a lone surrogate such
    as `"\\ud800"`, which JSON allows and Python strings hold, but no file or request can carry."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"{what} is not valid Unicode (a lone surrogate {ascii(text[error.start])} at character {error.start})"
    return None


@dataclass(kw_only=True)
class RolloutConfig:
    """`batch_size` episodes are in flight at once; `continuous` lets a streaming policy take each episode's next
    turn as soon as its last one ends instead of waiting for the whole batch's turn."""

    max_turns: int = 20
    batch_size: int = 16
    continuous: bool = True
    #: Sub-answer matcher of the metrics and of `correct`: reference (the paper's) or strict.
    matcher: str = "reference"


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
    #: Why the episode ended early (a fault of this episode only), or None.
    error: str | None = None

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
            **({"error": self.error} if self.error else {}),
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
    error: str | None = None


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
    failed: list[EpisodeResult] = []  # episodes that could not start, reported in their turn

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    def start_more(running: int) -> list[_Active]:
        """Episodes from the queue for the free places beside `running` ones."""
        started: list[_Active] = []
        while queue and running + len(started) < config.batch_size:
            key, env = queue.popleft()
            try:
                score = EpisodeScore.start(env.unsolved_set, matcher=get_matcher(config.matcher))
                started.append(_Active(key, env, runtime.episode(**kwargs_of(env)), copy.deepcopy(env.messages), score))
            except ValueError as error:  # this environment cannot be played (nothing owed, unknown domain...)
                failed.append(_failed_start(key, env, f"cannot start: {error}"))
                advance()
        return started

    def after_turn(items: list[_Active], replies: list[Message]) -> Iterator[_Active | EpisodeResult]:
        """Run the turn's tools; yields each item that goes on and the result of each that ended."""
        _run_tools(items, replies, runtime)
        for item, reply in zip(items, replies, strict=False):
            if item.error is None and reply.get("tool_calls") and item.score.n_turns < config.max_turns:
                yield item
                continue
            item.episode.close()
            advance()
            yield _finish(item, config.matcher)

    if config.continuous and isinstance(policy, StreamingPolicy):
        for result in _continuous(policy, start_more, after_turn):
            yield from _drain(failed)
            yield result
        yield from _drain(failed)
        return
    active: list[_Active] = []
    while queue or active:
        active += start_more(len(active))
        yield from _drain(failed)
        if not active:
            continue
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


def _drain(failed: list[EpisodeResult]) -> Iterator[EpisodeResult]:
    while failed:
        yield failed.pop(0)


def _failed_start(key: str, env: Environment, error: str) -> EpisodeResult:
    metrics = {"solve_precision": 0.0, "solve_rate": 0.0, "solve_f1": 0.0}
    return EpisodeResult(
        key=key, env=env, messages=[], metrics=metrics, correct=False, n_calls=0, n_errors=0, turns=0, error=error
    )


def _run_tools(active: list[_Active], replies: list[Message], runtime: ToolRunner) -> None:
    """Append each reply, run all replies' calls in one batch, append tool messages and update the scores.

    A reply that carries a fault, or is not valid Unicode, ends its episode (`error`) before its calls run; a tool
    output that is not valid Unicode ends it after the calls, without that turn's tool messages or score."""
    requests = []
    for item, reply in zip(active, replies, strict=False):
        item.error = reply.get(REPLY_ERROR) or unicode_fault(reply, "the model's reply")
        if item.error:
            item.error = f"{item.error} (turn {item.score.n_turns + 1})"
            continue
        item.messages.append(reply)
        for call in reply.get("tool_calls") or []:
            requests.append((item.episode, call["function"]["name"], call["function"]["arguments"]))
    outputs = iter(runtime.call_batch(requests))
    for item, reply in zip(active, replies, strict=False):
        if item.error:
            continue
        calls = reply.get("tool_calls") or []
        contents = [next(outputs) for _ in calls]
        faults = [
            unicode_fault(content, f"the output of tool {call['function']['name']!r}")
            for call, content in zip(calls, contents, strict=False)
        ]
        if fault := next(filter(None, faults), None):
            item.error = f"{fault} (turn {item.score.n_turns + 1})"
            continue
        for call, content in zip(calls, contents, strict=False):
            item.messages.append({"role": "tool", "content": content, "tool_call_id": call["id"]})
            item.n_errors += content.startswith(f"{TOOL_ERROR_PREFIX} {call['function']['name']}:")
        item.score.add_turn(reply, contents)
        if calls:
            remaining = copy.deepcopy(item.score.remaining)
            item.state_points.append(StatePoint(item.score.n_turns, len(item.messages), remaining))


def _finish(item: _Active, matcher: str) -> EpisodeResult:
    text = next(
        (str(m.get("content") or "") for m in reversed(item.messages) if m.get("role") == "assistant"),
        "",
    )
    correct = item.error is None and bool(item.env.answer) and final_answer_verify(text, item.env.answer, matcher)
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
        error=item.error,
    )
