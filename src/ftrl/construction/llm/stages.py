"""The five construction stages (plus question generation) as prompts to a chat model.

Each stage sends its prompt (`ftrl/construction/prompts/<stage>.md`), parses the reply, validates it with
`ftrl.construction.llm.checks`, and on a malformed or invalid reply asks once more with the reason (`repairs` times),
the refinement loop of ToolHop-style tool creation. A stage that still fails raises `Rejected(stage, reason)`;
the reason starts with its kind: `malformed output`, `invalid`, `verification failed` or `request refused`.
Deployment verification is the one every backend shares (`ftrl.construction.verify.verify_each`).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib.resources import files
from string import Template
from typing import Any, TypeVar

from ftrl.construction.base import Draft, Rejected, SubQuestion, stage_rng
from ftrl.construction.config import Difficulty
from ftrl.construction.llm.checks import (
    Invalid,
    as_text,
    check_arguments,
    check_tools,
    parse_sub_questions,
    properties_of,
    scenario_of,
)
from ftrl.construction.llm.client import ChatClient, RequestRefused
from ftrl.construction.llm.extract import MalformedOutput, drop_code_blocks, extract_code, extract_json
from ftrl.construction.verify import verify_each
from ftrl.env.record import SCENARIOS, Environment
from ftrl.env.validate import validate_environment
from ftrl.reward.match import answer_verify
from ftrl.runtime.protocol import ToolRunner

T = TypeVar("T")

SYSTEM = (
    "You are a meticulous engineer who builds tool-use training environments. "
    "Follow the requested output format exactly."
)
REPAIR = "Your reply was rejected: {reason}\nReply again in the requested format, with the problem fixed."
#: Themes drawn for generated questions, so a build covers many topics.
THEMES = (
    "corporate history",
    "astronomy",
    "football clubs",
    "classical music",
    "railways",
    "zoology",
    "film studios",
    "architecture",
    "chemistry",
    "aviation",
    "literature prizes",
    "city geography",
    "universities",
    "cuisine",
    "video games",
    "mountaineering",
    "shipping companies",
    "elections",
    "museums",
    "medicine",
)


def prompt(stage: str, **values: Any) -> str:
    """The stage's prompt file with `$name` placeholders filled (a missing value is an error, not a blank)."""
    text = files("ftrl.construction").joinpath("prompts", f"{stage}.md").read_text(encoding="utf-8")
    return Template(text).substitute(values)


@dataclass(kw_only=True)
class LLMContext:
    """What every stage shares: the client, sampling parameters, targets, and the verifying runtime."""

    client: ChatClient
    params: dict[str, Any] = field(default_factory=dict)
    repairs: int = 1
    difficulty: Difficulty = field(default_factory=Difficulty)
    scenarios: tuple[str, ...] = SCENARIOS
    runtime: ToolRunner | None = None
    #: Runs a coroutine from synchronous code (the `Stage.run` protocol); set by the backend.
    call_sync: Callable[[Coroutine[Any, Any, Any]], Any] | None = None
    #: The runtime is shared by concurrent drafts; verification runs one draft at a time.
    runtime_lock: threading.Lock = field(default_factory=threading.Lock)


class LLMStage:
    """Base of the model-driven stages: `arun` does the work, `run` is the synchronous `Stage` interface."""

    name = "llm"

    def __init__(self, context: LLMContext):
        self.context = context

    def run(self, draft: Draft) -> Draft:
        if self.context.call_sync is None:
            raise RuntimeError("LLM stages run synchronously only inside an LLMBackend (no event loop bridge set)")
        return self.context.call_sync(self.arun(draft))

    async def arun(self, draft: Draft) -> Draft:
        raise NotImplementedError

    async def reply(self, draft: Draft, messages: list[dict[str, str]]) -> str:
        """One completion; a request the server refuses becomes this stage's rejection."""
        params = {**self.context.params, "seed": _request_seed(draft)}
        try:
            completion = await self.context.client.complete(messages, **params)
        except RequestRefused as error:
            raise Rejected(self.name, f"request refused: {error}") from None
        if completion.finish_reason == "length":
            raise MalformedOutput("the reply was cut off at max_tokens")
        return completion.text

    async def ask(self, draft: Draft, user: str, parse: Callable[[str], T]) -> T:
        """Ask, parse and validate; on failure tell the model why and ask again, up to `repairs` times."""
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        failures: list[str] = []
        for _ in range(self.context.repairs + 1):
            text = ""
            try:
                text = await self.reply(draft, messages)
                return parse(text)
            except (MalformedOutput, Invalid) as error:
                failures.append(failure_reason(error))
                messages = [*messages, *_repair_turn(text, failures[-1])]
        draft.notes.setdefault(self.name, {})["failures"] = failures
        raise Rejected(self.name, _final_reason(failures))


def failure_reason(error: Exception) -> str:
    """A rejection reason that starts with its kind."""
    kind = "malformed output" if isinstance(error, MalformedOutput) else "invalid"
    return f"{kind}: {error}"


def _repair_turn(reply: str, reason: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": reply}, {"role": "user", "content": REPAIR.format(reason=reason)}]


def _final_reason(failures: list[str]) -> str:
    tries = f" (after {len(failures)} attempts)" if len(failures) > 1 else ""
    return failures[-1] + tries


def _request_seed(draft: Draft) -> int:
    """A per-item sampling seed, so servers that honour `seed` reproduce an item's replies."""
    return (draft.seed * 1_000_003 + draft.index) % 2**31


def _numbered(subs: list[SubQuestion]) -> str:
    lines = []
    for number, sub in enumerate(subs):
        needs = f" (uses answers of {', '.join(map(str, sub.depends_on))})" if sub.depends_on else ""
        lines.append(f"{number}: {sub.text} -> {sub.answer}{needs}")
    return "\n".join(lines)


def _tools_and_uses(draft: Draft) -> str:
    blocks = []
    for tool in draft.tools:
        name = tool["function"]["name"]
        uses = [
            f"  - [{i}] {sub.text} -> {sub.answer}"
            for i, sub in enumerate(draft.sub_questions)
            if draft.tool_of[i] == name
        ]
        blocks.append(json.dumps(tool, ensure_ascii=False) + "\n" + "\n".join(uses))
    return "\n\n".join(blocks)


class GenerateStage(LLMStage):
    """Invents a question and its answer for drafts without a seed question (scenario and theme are seeded)."""

    name = "generate"

    async def arun(self, draft: Draft) -> Draft:
        theme = stage_rng(draft, self.name).choice(THEMES)
        user = prompt(self.name, scenario=draft.scenario, theme=theme, index=draft.index)

        def parse(text: str) -> tuple[str, str]:
            data = extract_json(text)
            return as_text(data.get("question"), "'question'"), as_text(data.get("answer"), "'answer'")

        draft.question, draft.answer = await self.ask(draft, user, parse)
        draft.notes[self.name] = {"theme": theme}
        return draft


class DecomposeStage(LLMStage):
    """Sub-questions, sub-answers and dependencies; seed-provided sub-questions are only validated."""

    name = "decompose"

    async def arun(self, draft: Draft) -> Draft:
        if draft.scenario and draft.scenario not in self.context.scenarios:
            raise Rejected(self.name, f"invalid: scenario {draft.scenario} is not among the requested scenarios")
        if draft.sub_questions:
            try:
                self._accept(draft, draft.sub_questions, None)
            except Invalid as error:
                raise Rejected(self.name, f"invalid: seed sub-questions: {error}") from None
            return draft
        user = prompt(
            self.name,
            question=draft.question,
            answer=draft.answer,
            scenario=draft.scenario or "choose the one that fits",
            scenario_hint=draft.scenario or "single_hop | parallel_single_hop | multi_hop | parallel_multi_hop",
        )

        def parse(text: str) -> Draft:
            data = extract_json(text)
            aggregation = data.get("aggregation")
            return self._accept(draft, parse_sub_questions(data.get("sub_questions")), aggregation)

        return await self.ask(draft, user, parse)

    def _accept(self, draft: Draft, subs: list[SubQuestion], aggregation: Any) -> Draft:
        shape = scenario_of(subs)
        if draft.scenario and shape != draft.scenario:
            raise Invalid(
                f"the dependencies make a {shape} question, but a {draft.scenario} decomposition was asked for"
            )
        if shape not in self.context.scenarios:
            raise Invalid(f"scenario {shape} is not among the requested scenarios {', '.join(self.context.scenarios)}")
        if shape in ("single_hop", "multi_hop") and not (
            answer_verify(subs[-1].answer, draft.answer) or answer_verify(draft.answer, subs[-1].answer)
        ):
            raise Invalid(f"the last sub-answer {subs[-1].answer!r} is not the final answer {draft.answer!r}")
        draft.scenario, draft.sub_questions = shape, subs
        aggregation = str(aggregation or "last").strip()
        if aggregation == "last" and subs[-1].answer != draft.answer:
            aggregation = "derived from the sub-answers"
        draft.aggregation = aggregation
        draft.domain_world = "llm"
        return draft


class DocumentStage(LLMStage):
    """One tool schema per sub-question."""

    name = "document"

    async def arun(self, draft: Draft) -> Draft:
        subs = draft.sub_questions
        user = prompt(self.name, question=draft.question, sub_questions=_numbered(subs), count=len(subs))

        def parse(text: str) -> Draft:
            tools = check_tools(extract_json(text).get("tools"))
            if len(tools) != len(subs):
                raise Invalid(f"{len(tools)} tools for {len(subs)} sub-questions; write exactly one per sub-question")
            draft.tools = tools
            draft.tool_of = [tool["function"]["name"] for tool in tools]
            return draft

        return await self.ask(draft, user, parse)


class IntegrateStage(LLMStage):
    """Merges tools of overlapping function; a single tool has nothing to merge and costs no request."""

    name = "integrate"

    async def arun(self, draft: Draft) -> Draft:
        if len(draft.tools) < 2:
            return draft
        user = prompt(self.name, tools_and_uses=_tools_and_uses(draft), last=len(draft.sub_questions) - 1)

        def parse(text: str) -> Draft:
            data = extract_json(text)
            tools = check_tools(data.get("tools"))
            names = [tool["function"]["name"] for tool in tools]
            tool_of = data.get("tool_of")
            if not isinstance(tool_of, list) or len(tool_of) != len(draft.sub_questions):
                raise Invalid(f"'tool_of' must name one tool for each of the {len(draft.sub_questions)} sub-questions")
            unknown = sorted({str(t) for t in tool_of if t not in names})
            if unknown:
                raise Invalid(f"'tool_of' names tools that are not in 'tools': {', '.join(unknown)}")
            unused = [name for name in names if name not in tool_of]
            if unused:
                raise Invalid(f"tools {', '.join(unused)} answer no sub-question; drop them")
            draft.notes[self.name] = {"merged": len(draft.tools) - len(tools)}
            draft.tools, draft.tool_of = tools, list(tool_of)
            return draft

        return await self.ask(draft, user, parse)


class ScaleStage(LLMStage):
    """Generalizes the tools, expands their parameters and adds distractor tools, then shuffles the order."""

    name = "scale"

    async def arun(self, draft: Draft) -> Draft:
        difficulty = self.context.difficulty
        rng = stage_rng(draft, self.name)
        total = rng.randint(difficulty.min_tools, max(difficulty.min_tools, difficulty.max_tools))
        wanted = max(difficulty.min_distractors, total - len(draft.tools), 1)
        user = prompt(
            self.name,
            tools_and_uses=_tools_and_uses(draft),
            min_params=difficulty.min_params,
            max_params=difficulty.max_params,
            distractors=wanted,
        )
        old = {tool["function"]["name"]: tool for tool in draft.tools}

        def parse(text: str) -> Draft:
            data = extract_json(text)
            scaled = check_tools(data.get("tools"))
            if sorted(t["function"]["name"] for t in scaled) != sorted(old):
                raise Invalid(f"'tools' must keep exactly the tools {', '.join(old)} (same names)")
            for tool in scaled:
                name = tool["function"]["name"]
                lost = [p for p in properties_of(old[name]) if p not in properties_of(tool)]
                if lost:
                    raise Invalid(f"{name} lost its parameter(s) {', '.join(lost)}; keep every existing parameter")
                if len(properties_of(tool)) < difficulty.min_params:
                    raise Invalid(
                        f"{name} has {len(properties_of(tool))} parameters; "
                        f"give it {difficulty.min_params} to {difficulty.max_params}"
                    )
            distractors = check_tools(data.get("distractors"), "distractor")
            if len(distractors) < difficulty.min_distractors:
                raise Invalid(f"{len(distractors)} distractor tools; add {wanted}")
            clash = [t["function"]["name"] for t in distractors if t["function"]["name"] in old]
            if clash:
                raise Invalid(f"distractor names {', '.join(clash)} are already used by the answering tools")
            tools = scaled + distractors
            rng.shuffle(tools)
            draft.tools = tools
            draft.distractors = [t["function"]["name"] for t in distractors]
            draft.notes[self.name] = _parameter_stats(tools)
            return draft

        return await self.ask(draft, user, parse)


def _parameter_stats(tools: list[dict[str, Any]]) -> dict[str, float]:
    """How close scaling came to the paper's targets (about 7 parameters, mostly optional, a quarter enums)."""
    schemas = [tool["function"]["parameters"] for tool in tools]
    total = max(1, sum(len(schema["properties"]) for schema in schemas))
    required = sum(len(schema["required"]) for schema in schemas)
    enums = sum(1 for schema in schemas for spec in schema["properties"].values() if "enum" in spec)
    return {
        "params_per_tool": round(total / len(tools), 2),
        "optional_share": round(1 - required / total, 3),
        "enum_share": round(enums / total, 3),
    }


class DeployStage(LLMStage):
    """Code and gold arguments per tool (one conversation each), verified together in the runtime.

    Tools whose reply is unusable, and tools that a verification failure names, are asked again with the
    reason; a failure that names no tool goes back to every answering tool.
    """

    name = "deploy"

    async def arun(self, draft: Draft) -> Draft:
        names = draft.tool_names
        conversations = {name: self._conversation(draft, name) for name in names}
        replies: dict[str, str] = {}
        results: dict[str, tuple[str, dict[int, dict[str, Any]]]] = {}
        pending, attempts = list(names), 0
        problems: dict[str, str] = {}
        while attempts <= self.context.repairs:
            attempts += 1
            outcomes = await asyncio.gather(*(self._implement(draft, name, conversations[name]) for name in pending))
            problems = {}
            for name, (text, outcome) in zip(pending, outcomes, strict=True):
                replies[name] = text
                if isinstance(outcome, str):
                    problems[name] = outcome
                else:
                    results[name] = outcome
            if not problems:
                problem = await self._verify(draft, results)
                if problem is None:
                    return draft
                named = [n for n in names if re.search(rf"\b{re.escape(n)}\b", problem)]
                problems = {name: problem for name in named or sorted(set(draft.tool_of))}
            for name, reason in problems.items():
                conversations[name] += _repair_turn(replies[name], reason)
            pending = list(problems)
        draft.notes.setdefault(self.name, {})["failures"] = problems
        name, reason = next(iter(problems.items()))
        raise Rejected(self.name, f"{reason} [tool {name}]" + (f" (after {attempts} attempts)" if attempts > 1 else ""))

    def _conversation(self, draft: Draft, name: str) -> list[dict[str, str]]:
        tool = _tool(draft, name)
        served = _served(draft, name)
        subs = draft.sub_questions
        if served:
            lines = [f"This tool answers these sub-questions of the question {draft.question!r}:"]
            for i in served:
                lines.append(f"- [{i}] {subs[i].text} -> gold answer: {subs[i].answer}")
                lines += [
                    f"    (needs the earlier answer {subs[j].answer!r}: put it verbatim into the arguments)"
                    for j in subs[i].depends_on
                ]
            others = [repr(sub.answer) for i, sub in enumerate(subs) if i not in served]
            if others:
                lines.append(f"No output may contain the other answers of the question: {', '.join(others)}.")
            example = {"calls": [{"sub_question": i, "arguments": {"...": "..."}} for i in served]}
            gold_format = (
                "Reply with the code in a ```python block, then the arguments of the gold call for each sub-question"
                f" above in a ```json block:\n```json\n{json.dumps(example)}\n```"
            )
        else:
            answers = ", ".join(repr(sub.answer) for sub in subs)
            lines = [
                f"No sub-question needs this tool: it is a distractor beside the tools that answer {draft.question!r}.",
                f"It has no gold calls, and no output may contain these answers: {answers}.",
            ]
            gold_format = "Reply with the code in a ```python block."
        user = prompt(
            self.name,
            tool=json.dumps(tool, ensure_ascii=False, indent=1),
            name=name,
            duty="\n".join(lines),
            gold_format=gold_format,
        )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    async def _implement(self, draft: Draft, name: str, messages: list[dict[str, str]]) -> tuple[str, Any]:
        """`(reply, (code, gold arguments by sub-question))`, or `(reply, reason)` when the reply is unusable."""
        text = ""
        try:
            text = await self.reply(draft, messages)
            return text, _parse_implementation(draft, name, text)
        except (MalformedOutput, Invalid) as error:
            return text, failure_reason(error)

    async def _verify(self, draft: Draft, results: dict[str, tuple[str, dict[int, dict[str, Any]]]]) -> str | None:
        """Assemble the draft and run the shared verification in the runtime; the reason on failure."""
        draft.codes = {name: results[name][0] for name in draft.tool_names}
        draft.gold_arguments = [results[tool][1][i] for i, tool in enumerate(draft.tool_of)]
        issues = validate_environment(draft.to_environment())
        if issues:
            return "invalid: " + "; ".join(map(str, issues))

        runtime = self.context.runtime
        if runtime is None:
            raise RuntimeError("deploy verifies drafts in a runtime, and this LLMContext has none")

        def verify() -> Draft | Rejected:
            with self.context.runtime_lock:
                return verify_each(runtime, [draft])[0]

        outcome = await asyncio.to_thread(verify)
        return f"verification failed: {outcome.reason}" if isinstance(outcome, Rejected) else None


def _tool(draft: Draft, name: str) -> dict[str, Any]:
    return next(tool for tool in draft.tools if tool["function"]["name"] == name)


def _served(draft: Draft, name: str) -> list[int]:
    return [i for i, tool in enumerate(draft.tool_of) if tool == name]


def _parse_implementation(draft: Draft, name: str, text: str) -> tuple[str, dict[int, dict[str, Any]]]:
    """The tool's code (statically checked) and, for an answering tool, valid gold arguments per sub-question."""
    tool = _tool(draft, name)
    code = extract_code(text)
    probe = Environment(
        messages=[{"role": "user", "content": draft.question}], tools=[tool], codes={name: code}, unsolved_set={}
    )
    issues = [issue.message for issue in validate_environment(probe) if issue.field == "codes"]
    if issues:
        raise Invalid("; ".join(issues))
    served = _served(draft, name)
    if not served:
        return code, {}
    calls = extract_json(drop_code_blocks(text)).get("calls")
    if not isinstance(calls, list):
        raise MalformedOutput("no ```json block with a 'calls' list after the code")
    arguments: dict[int, dict[str, Any]] = {}
    for call in calls:
        index = call.get("sub_question") if isinstance(call, dict) else None
        if index not in served:
            raise Invalid(f"'calls' entry {call!r} does not name one of the sub-questions {served}")
        arguments[index] = check_arguments(call.get("arguments"), tool, f"gold call for sub-question {index}")
        for needed in draft.sub_questions[index].depends_on:
            earlier = draft.sub_questions[needed].answer
            if earlier not in json.dumps(arguments[index], ensure_ascii=False):
                raise Invalid(
                    f"the gold arguments of sub-question {index} must contain the earlier answer {earlier!r} verbatim"
                )
    missing = [i for i in served if i not in arguments]
    if missing:
        raise Invalid(f"no gold call for sub-question(s) {missing}")
    return code, arguments
