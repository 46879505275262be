"""What the rollout engine asks of a model: answer many conversations at once, with tools offered.

A policy is anything with `generate(conversations, tools) -> assistant messages`, the same protocol the external
benchmarks use, so a local model, an OpenAI-compatible server and the gold-replaying oracle are interchangeable.
Replies are canonical assistant messages: `{"role": "assistant", "content": str, "tool_calls": [...] | None}`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ftrl.env.record import Environment
from ftrl.formats.calls import assistant_message

Message = dict[str, Any]


class Policy(Protocol):
    """Answers `conversations[i]` given the tool schemas `tools[i]`."""

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
class OraclePolicy:
    """Replays each environment's gold trajectory: its `gold_calls`, then the gold final answer.

    `gold_calls` is a list of OpenAI tool calls (one per turn) or a list of lists (one group per turn). The
    conversation is matched to its environment by identity: the engine passes each environment's own `tools`
    list object, so rows that repeat a question still replay their own calls (the question text alone decides
    only where it is unique); the turn is the number of assistant messages so far, so the oracle keeps no state.
    """

    envs: Sequence[Environment]
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        missing = [index for index, env in enumerate(self.envs) if not env.gold_calls]
        if missing:
            rows = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValueError(f"the oracle replays gold_calls, and rows {rows} (0-based) have no gold_calls to replay")
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
                raise KeyError(f"the oracle knows {known} with this question and these tools: {question[:80]!r}")
            env = candidates[0]
        turns = gold_turns(env)
        done = sum(1 for m in messages if m.get("role") == "assistant")
        if done < len(turns):
            return assistant_message("", [dict(call) for call in turns[done]])
        return assistant_message(f"The answer is {env.answer}.", None)


def gold_turns(env: Environment) -> list[list[dict[str, Any]]]:
    """An environment's gold calls grouped by turn; environments without them cannot be replayed."""
    calls = env.gold_calls
    if not calls:
        raise ValueError(f"environment {env.extra.get('index', env.question[:60])!r} has no gold_calls to replay")
    return [list(group) if isinstance(group, list) else [group] for group in calls]


@dataclass
class PolicySpec:
    """How to build a policy from the command line: `oracle`, a local model (folder or `embedded`), or a
    served model name with `base_url`. The prompt variant applies to local models without native tools."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_size: int = 16
    enable_thinking: bool = False
    prompt: str = "example"
    threads: int | None = None
    seed: int = 0
    timeout_s: float = 300.0  # a served model's request, retries included
    device: str = "auto"
    dtype: str = "auto"


def load_policy(spec: PolicySpec, envs: Sequence[Environment] = ()) -> Policy:
    """The policy for `spec`; the oracle needs the environments whose gold trajectories it replays."""
    if spec.model == "oracle":
        return OraclePolicy(envs)
    if spec.base_url:
        from ftrl.rollout.endpoint import EndpointConfig, EndpointPolicy

        return EndpointPolicy(
            EndpointConfig(
                spec.base_url,
                spec.model,
                spec.api_key,
                spec.temperature,
                spec.top_p,
                spec.max_new_tokens,
                spec.enable_thinking,
                concurrency=spec.batch_size,
                timeout_s=min(120.0, spec.timeout_s),
                total_timeout_s=spec.timeout_s,
            )
        )
    from ftrl.rollout.hf import HFConfig, HFPolicy

    config = HFConfig(
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        max_batch=spec.batch_size,
        enable_thinking=spec.enable_thinking,
        prompt=spec.prompt,
        seed=spec.seed,
        threads=spec.threads,
        device=spec.device,
        dtype=spec.dtype,
    )
    return HFPolicy.load(spec.model, config)


def load_local_policy(model: str, enable_thinking: bool = False) -> Policy:
    """A local model (folder or `embedded`) with default settings, for the external benchmarks."""
    return load_policy(PolicySpec(model, enable_thinking=enable_thinking))
