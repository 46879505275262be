"""What the rest of ftrl asks of a tool runtime, as protocols: the type of every `runtime` parameter.

`ftrl.runtime.ToolRuntime` is the implementation; builders, scorers, trainers and benchmarks are written against
these so that a test can hand them a small stand-in, and so a signature says what it calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

#: A tool call's arguments: the model's JSON text, or an already parsed object.
Arguments = str | Mapping[str, Any]


class ToolEpisode(Protocol):
    """One rollout's view of the runtime: its tools and, optionally, its own copy of a state."""

    def call(self, name: str, arguments: Arguments) -> str:
        """Run one tool call; the tool message content (tool faults become text, never exceptions)."""
        ...

    def call_many(self, calls: Sequence[tuple[str, Arguments]]) -> list[str]:
        """Run calls in order in one round trip."""
        ...

    def state(self) -> Any:
        """The episode's current state (None without one)."""
        ...

    def state_hash(self) -> str:
        """sha256 of the state's canonical JSON."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> ToolEpisode: ...

    def __exit__(self, *exc: object) -> None: ...


class ToolRunner(Protocol):
    """Runs tool code in isolation: episodes for rollouts and scoring, code checks, batched calls."""

    def episode(
        self,
        codes: Mapping[str, str],
        state: Any = None,
        *,
        state_kwarg: str = "data",
        state_key: str | None = None,
    ) -> ToolEpisode:
        """A new episode with these tools; `state` (or the shared state named `state_key`) is its own copy."""
        ...

    def check(self, codes: Mapping[str, str]) -> dict[str, str | None]:
        """Per tool: None if its code defines a callable of its name, else why not."""
        ...

    def call_batch(self, requests: Sequence[tuple[Any, str, Arguments]]) -> list[str]:
        """Many calls for many episodes (each one this runtime opened), run concurrently; results in order."""
        ...
