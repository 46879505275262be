"""`LLMBackend`: the five stages over seed questions (or generated ones), many items in flight at once.

Item `i` is seed question `i` (or, without a seed file, a question generated for `(seed, i)` with scenario
`scenarios[i % len(scenarios)]`), and every request it sends is cached, so a resumed build replays earlier
items from the cache and continues where the interrupted one stopped. Items run concurrently on one event
loop in a background thread; they are yielded strictly in index order.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

from ftrl.construction.base import Draft, Rejected, Rejection, SubQuestion
from ftrl.construction.config import BuildConfig
from ftrl.construction.llm.checks import Invalid, as_text, parse_sub_questions
from ftrl.construction.llm.client import ChatClient, ClientStats, ResponseCache
from ftrl.construction.llm.stages import (
    DecomposeStage,
    DeployStage,
    DocumentStage,
    GenerateStage,
    IntegrateStage,
    LLMContext,
    LLMStage,
    ScaleStage,
)
from ftrl.env.record import SCENARIOS, Environment
from ftrl.jsonl import DataError, iter_jsonl
from ftrl.runtime.protocol import ToolRunner

T = TypeVar("T")


def default_cache_dir() -> str:
    """`$FTRL_LLM_CACHE`, else `~/.cache/ftrl/llm`: shared by all builds, keyed by request content."""
    return os.environ.get("FTRL_LLM_CACHE") or str(Path.home() / ".cache" / "ftrl" / "llm")


@dataclass
class SeedQuestion:
    """One row of a seed-question file."""

    question: str
    answer: str
    scenario: str = ""
    sub_questions: list[SubQuestion] | None = None


def read_seed_questions(path: str | Path) -> list[SeedQuestion]:
    """Seed questions from JSONL (`question`, `answer`, optional `scenario` and `sub_questions`); bad rows raise."""
    seeds = []
    for line, row in iter_jsonl(path):
        try:
            scenario = str(row.get("scenario") or "")
            if scenario and scenario not in SCENARIOS:
                raise Invalid(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
            subs = parse_sub_questions(row["sub_questions"]) if row.get("sub_questions") else None
            seeds.append(
                SeedQuestion(
                    as_text(row.get("question"), "'question'"), as_text(row.get("answer"), "'answer'"), scenario, subs
                )
            )
        except Invalid as error:
            raise DataError(path, line, None, str(error)) from None
    return seeds


class _LoopThread:
    """An event loop in a daemon thread, so synchronous callers (the driver, `Stage.run`) can await."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ftrl-llm-loop", daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.submit(coroutine).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class LLMBackend:
    """Builds environments with a chat model through an OpenAI-compatible server (`ftrl build --backend llm`)."""

    name = "llm"

    def __init__(self, config: BuildConfig, runtime: ToolRunner):
        if config.server is None:
            raise ValueError("the llm backend needs --base-url and --model")
        self.config = config
        self.server = config.server
        self.runtime = runtime
        self.seeds = read_seed_questions(config.seed_questions) if config.seed_questions else None
        #: Requests, retries and cache hits of the last `build`.
        self.stats: ClientStats | None = None

    def draft(self, index: int) -> Draft:
        """Item `index` before any stage: its seed question, or just a scenario for generation."""
        scenarios = self.config.scenarios
        draft = Draft(
            "", scenarios[index % len(scenarios)], index=index, seed=self.config.seed, split=self.config.split
        )
        if self.seeds is not None:
            seed = self.seeds[index]
            draft.question, draft.answer, draft.scenario = seed.question, seed.answer, seed.scenario
            draft.sub_questions = list(seed.sub_questions or [])
        return draft

    def stages(self, context: LLMContext) -> list[LLMStage]:
        stages: list[LLMStage] = [] if self.seeds is not None else [GenerateStage(context)]
        return stages + [
            stage(context) for stage in (DecomposeStage, DocumentStage, IntegrateStage, ScaleStage, DeployStage)
        ]

    def build(self, config: BuildConfig, start: int = 0) -> Iterator[Environment | Rejection]:
        cache = ResponseCache(config.cache_dir or default_cache_dir())
        runner = _LoopThread()
        client = ChatClient(self.server, cache)
        self.stats = client.stats
        context = LLMContext(
            client=client,
            params={"temperature": config.sampling.temperature, "max_tokens": config.sampling.max_new_tokens},
            repairs=config.repairs,
            difficulty=config.difficulty,
            scenarios=config.scenarios,
            runtime=self.runtime,
            call_sync=runner.call,
        )
        stages = self.stages(context)
        indices = iter(range(start, len(self.seeds)) if self.seeds is not None else count(start))
        window: deque[Future[Environment | Rejection]] = deque()
        try:
            while True:
                while len(window) < max(1, self.server.concurrency):
                    index = next(indices, None)
                    if index is None:
                        break
                    window.append(runner.submit(_run_item(stages, self.draft(index))))
                if not window:
                    return
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()
            runner.call(_drain_and_close(client))
            runner.close()


async def _run_item(stages: list[LLMStage], draft: Draft) -> Environment | Rejection:
    """The async twin of `run_stages`: a `Rejected` becomes a `Rejection` row."""
    try:
        for stage in stages:
            draft = await stage.arun(draft)
    except Rejected as rejected:
        return Rejection(draft.index, rejected.stage, rejected.reason, draft.scenario, draft.question)
    return draft.to_environment()


async def _drain_and_close(client: ChatClient) -> None:
    """Let cancelled items unwind, then close the HTTP client."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    await asyncio.gather(*others, return_exceptions=True)
    await client.__aexit__(None, None, None)


def make_backend(config: BuildConfig, runtime: ToolRunner) -> LLMBackend:
    """The driver's entry point (`ftrl.construction.driver.make_backend` imports this lazily)."""
    return LLMBackend(config, runtime)
