"""The shared contract of environment construction: a `Draft` flows through five `Stage`s to an `Environment`.

Every backend (the offline procedural one, the LLM one) builds environments the paper's way, in five stages
with the same interface:

1. decompose  - question -> sub-questions with gold sub-answers and dependencies (`Draft.sub_questions`)
2. document   - one OpenAI tool schema per sub-question (`Draft.tools`, `Draft.tool_of`)
3. integrate  - merge tools of overlapping function (`Draft.tool_of` may map several sub-questions to one tool)
4. scale      - functional/parameter/type generalization and distractor tools (`Draft.distractors`)
5. deploy     - Python code for every tool (`Draft.codes`) and gold calls (`Draft.gold_calls`), then
                verification by executing the environment in the isolated runtime

Contract of a stage: `run(draft)` returns the (same or a copied) draft with its own fields filled, validates
what it produced, and raises `Rejected(stage, reason)` instead of passing on a broken draft. A stage may
write diagnostics to `draft.notes[stage_name]`. Stages never execute generated code in-process: only the
runtime (`ftrl.runtime`) runs it.

Contract of a backend: constructed as `Backend(config, runtime)` (the runtime verifies deployments; the
driver imports the LLM one lazily as `ftrl.construction.llm.make_backend(config, runtime)`);
`build(config, start)` yields, for indices `start, start + 1, ...`, either an
`Environment` or a `Rejection`, in index order; item `i` depends only on `(config.seed, i)` (plus the
backend's own inputs such as seed questions), so a build resumed at `start` continues exactly where an
interrupted one stopped. The driver (`ftrl.construction.driver`) stops consuming once it has enough environments.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ftrl.env.record import Environment

if TYPE_CHECKING:
    from ftrl.construction.config import BuildConfig

#: The user prompt of a raw environment, exactly as in the paper's data.
PROMPT_TEMPLATE = (
    "Please call given tools to answer the question. Please note that all your information must be obtained "
    "by calling tools and not by answering the question directly.\nIf the call fails, you need to try to "
    "correct it and continue until you arrive at an answer.\nQuestion: {question}"
)

#: Stage names in pipeline order; every backend runs these five.
STAGE_NAMES = ("decompose", "document", "integrate", "scale", "deploy")


@dataclass
class SubQuestion:
    """One step of a decomposed question; `depends_on` lists indices of sub-questions whose answers it needs."""

    text: str
    answer: str
    depends_on: list[int] = field(default_factory=list)
    #: Backend-specific structured facts (e.g. entity, attribute) that later stages use to write tools.
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Draft:
    """An environment under construction; stages fill it in order, `to_environment` finishes it."""

    question: str
    scenario: str
    index: int = 0
    seed: int = 0
    split: str = "train"
    sub_questions: list[SubQuestion] = field(default_factory=list)
    #: How the final answer follows from the sub-answers. "last": the answer is found in the last gold call's
    #: output; "list", "sum", "difference", "yes_no", "compare": computed by `decompose.final_answer` from the
    #: sub-questions listed in `notes["decompose"]["ends"]`; anything else: not checked.
    aggregation: str = "last"
    answer: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    #: Tool name serving each sub-question, by sub-question index.
    tool_of: list[str] = field(default_factory=list)
    #: Gold arguments of the call that answers each sub-question, by sub-question index.
    gold_arguments: list[dict[str, Any]] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)
    #: Names of tools no sub-question needs.
    distractors: list[str] = field(default_factory=list)
    #: Which synthetic or real world the facts come from (e.g. "company+city" or "llm").
    domain_world: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def tool_names(self) -> list[str]:
        return [tool["function"]["name"] for tool in self.tools]

    def unsolved_set(self) -> dict[str, list[str]]:
        """Gold sub-answers keyed by the tool that must produce them (reference `unsolved_set`)."""
        pending: dict[str, list[str]] = {}
        for sub, tool in zip(self.sub_questions, self.tool_of, strict=True):
            pending.setdefault(tool, []).append(sub.answer)
        return pending

    def gold_calls(self) -> list[dict[str, Any]]:
        """Gold tool calls in sub-question order, as OpenAI tool-call dicts."""
        return [
            {
                "id": f"call_{self.index}_{number}",
                "type": "function",
                "function": {"name": tool, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            for number, (tool, arguments) in enumerate(zip(self.tool_of, self.gold_arguments, strict=True))
        ]

    def to_environment(self) -> Environment:
        """The raw environment (reference format) with the gold trajectory and provenance in `extra`."""
        return Environment(
            messages=[{"role": "user", "content": PROMPT_TEMPLATE.format(question=self.question)}],
            tools=self.tools,
            codes=self.codes,
            unsolved_set=self.unsolved_set(),
            solve_rate=0.0,
            answer=self.answer,
            data_source=f"self/{self.scenario}",
            split=self.split,
            extra={
                "index": self.index,
                "seed": self.seed,
                "domain_world": self.domain_world,
                "gold_calls": self.gold_calls(),
                "gold_answer_turn": self.answer,
                "sub_questions": [
                    {"text": s.text, "answer": s.answer, "depends_on": s.depends_on} for s in self.sub_questions
                ],
                "aggregation": self.aggregation,
                "distractors": self.distractors,
            },
        )


class Rejected(Exception):
    """A stage refuses a draft; `stage` names it and `reason` says why, for the rejection log."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class Rejection:
    """A rejected build attempt as written to `<out>.rejections.jsonl`."""

    index: int
    stage: str
    reason: str
    scenario: str = ""
    question: str = ""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Stage(Protocol):
    """One pipeline step: fills its part of the draft, validates it, raises `Rejected` otherwise."""

    name: str

    def run(self, draft: Draft) -> Draft: ...


@runtime_checkable
class Backend(Protocol):
    """A source of environments: yields `Environment | Rejection` for indices `start, start + 1, ...`."""

    name: str

    def build(self, config: BuildConfig, start: int = 0) -> Iterator[Environment | Rejection]: ...


def stage_rng(draft: Draft, stage: str) -> random.Random:
    """A generator that depends only on (seed, index, stage), so stages and resumes are reproducible."""
    return random.Random(f"ftrl-build:{draft.seed}:{draft.index}:{stage}")
