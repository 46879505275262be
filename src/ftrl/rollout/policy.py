"""What the rollout engine asks of a model: answer many conversations at once, with tools offered.

A policy is anything with `generate(conversations, tools) -> assistant messages`, the same protocol the external
benchmarks use, so a local model, an OpenAI-compatible server and the gold-replaying policy are interchangeable.
Replies are canonical assistant messages: `{"role": "assistant", "content": str, "tool_calls": [...] | None}`.
Only the protocols, their shared types and the gold policy live here; `ftrl.rollout.load` builds a policy from a spec.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ftrl.env.gold import gold_turns
from ftrl.env.record import Environment
from ftrl.formats.calls import assistant_message

Message = dict[str, Any]


class Policy(Protocol):
    """Answers `conversations[i]` given the OpenAI tool schemas `tools[i]` (`tools` None: no tools at all)."""

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]: ...


@runtime_checkable
class StreamingPolicy(Protocol):
    """A policy that takes conversations one by one and answers each as soon as it is done (continuous batching):
    the engine submits a conversation's next turn while the others are still being decoded."""

    def submit(self, key: Hashable, messages: list[Message], tools: list[dict] | None) -> None: ...

    def step(self) -> list[tuple[Hashable, Message]]:
        """Advance decoding; the replies of conversations whose turn ended."""
        ...

    def release(self, key: Hashable) -> None:
        """The conversation ended: forget what was kept for its next turn."""
        ...


@dataclass
class GenerationStats:
    """Counters a policy keeps so benchmarks can report tokens per second."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class GoldPolicy:
    """Replays each environment's gold trajectory: its `gold_calls`, then the gold final answer.

    The turns are `ftrl.env.gold.gold_turns` as stored (a flat `gold_calls` list: one call per turn). The
    conversation is matched to its environment by identity: the engine passes each environment's own `tools`
    list object, so rows that repeat a question still replay their own calls (the question text alone decides
    only where it is unique); the turn is the number of assistant messages so far, so the policy keeps no state.
    """

    envs: Sequence[Environment]
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        missing = [index for index, env in enumerate(self.envs) if not env.gold_calls]
        if missing:
            rows = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValueError(
                f"the gold policy replays gold_calls, and rows {rows} (0-based) have no gold_calls to replay"
            )
        # `envs` stays referenced by this policy, so the ids of its tools lists cannot be reused meanwhile
        self._by_identity = {(id(env.tools), env.question): env for env in self.envs}
        self._by_question: dict[str, list[Environment]] = {}
        for env in self.envs:
            self._by_question.setdefault(env.question, []).append(env)

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        self.stats.calls += 1
        return [self._reply(messages, tools[i] if tools else None) for i, messages in enumerate(conversations)]

    def _reply(self, messages: list[Message], tools: list[dict] | None) -> Message:
        question = next(
            (str(m.get("content") or "") for m in messages if m.get("role") == "user"),
            "",
        )
        env = self._by_identity.get((id(tools), question))
        if env is None:
            candidates = self._by_question.get(question, [])
            if len(candidates) != 1:
                known = "no environment" if not candidates else f"{len(candidates)} environments"
                raise KeyError(f"the gold policy knows {known} with this question and these tools: {question[:80]!r}")
            env = candidates[0]
        turns = gold_turns(env)
        done = sum(1 for m in messages if m.get("role") == "assistant")
        if done < len(turns):
            return assistant_message("", [dict(call) for call in turns[done]])
        return assistant_message(f"The answer is {env.answer}.", None)
