"""Deployment verification, shared by every construction backend (procedural and LLM): run an environment's gold
calls and probe calls in the isolated runtime and reject the draft unless the outputs prove it solvable and robust.

The checks (`verify_outputs`): the environment's calls are executed in the isolated runtime only (never in this
process), and the draft is rejected unless
- every gold call returns its sub-answer under the reference matcher, and no gold call output contains the
  sub-answer of another sub-question it does not depend on (no accidental solves);
- replaying the gold calls scores Solve-F1 = 1.0 and the final answer follows from the sub-answers
  (`final_answer`, the aggregation rule of a draft);
- calls with missing arguments and unknown entities return error or not-found replies instead of crashing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ftrl.construction.base import Draft, Rejected
from ftrl.reward.episode import EpisodeScore
from ftrl.reward.match import answer_verify
from ftrl.runtime import TOOL_ERROR_PREFIX
from ftrl.runtime.protocol import ToolRunner

#: Answer kinds aggregated as numbers.
NUMERIC = ("count", "measure", "year")
#: An entity name no world contains (a missing entity must get a not-found reply).
MISSING_ENTITY = "Qqxq Nonexistent Entity"


def final_answer(draft: Draft) -> str | None:
    """The gold final answer computed from the sub-answers, or None when the draft does not say how.

    Deployment checks the gold trajectory against it; `ends` (the sub-questions aggregated) comes from
    this stage's notes.
    """
    answers = [sub.answer for sub in draft.sub_questions]
    if draft.aggregation == "last":
        return answers[-1]
    notes = draft.notes.get("decompose", {})
    if "ends" not in notes:
        return None
    ends = [answers[i] for i in notes["ends"]]
    kind = draft.sub_questions[notes["ends"][0]].facts["kind"]
    if draft.aggregation == "list":
        return ", ".join(ends)
    numbers = [float(v) if kind in NUMERIC else v for v in ends]
    if draft.aggregation == "sum":
        return _number(sum(numbers), kind)
    if draft.aggregation == "difference":
        return _number(abs(numbers[0] - numbers[1]), kind)
    if draft.aggregation == "yes_no":
        return "yes" if numbers[0] > numbers[1] else "no"
    if draft.aggregation == "compare":
        best = max(range(len(numbers)), key=lambda i: numbers[i])
        if numbers.count(numbers[best]) > 1:
            raise Rejected("decompose", "comparison operands tie")
        return notes["names"][best]
    raise Rejected("decompose", f"unknown aggregation {draft.aggregation!r}")


def _number(value: float, kind: str) -> str:
    return f"{value:.1f}" if kind == "measure" else str(int(round(value)))


def probe_calls(draft: Draft) -> list[tuple[str, dict[str, Any]]]:
    """Calls that must fail gracefully: every tool without arguments, every solver with an unknown entity."""
    calls: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in draft.tool_names]
    seen: set[str] = set()
    for tool, arguments in zip(draft.tool_of, draft.gold_arguments, strict=True):
        if tool not in seen:
            seen.add(tool)
            missing = {k: (MISSING_ENTITY if k.endswith("_name") else v) for k, v in arguments.items()}
            calls.append((tool, missing))
    return calls


def verify_each(runtime: ToolRunner, drafts: Sequence[Draft]) -> list[Draft | Rejected]:
    """One runtime batch for all drafts; each draft comes back verified or as the `Rejected` that explains why."""
    jobs = []
    for draft in drafts:
        gold = list(zip(draft.tool_of, draft.gold_arguments, strict=True))
        jobs.append((draft.codes, gold + probe_calls(draft)))
    results = run_jobs(runtime, jobs)
    outcomes: list[Draft | Rejected] = []
    for draft, outputs in zip(drafts, results, strict=True):
        try:
            verify_outputs(draft, outputs[: len(draft.sub_questions)], outputs[len(draft.sub_questions) :])
            outcomes.append(draft)
        except Rejected as rejected:
            outcomes.append(rejected)
    return outcomes


def run_jobs(
    runtime: ToolRunner, jobs: list[tuple[dict[str, str], list[tuple[str, dict[str, Any]]]]]
) -> list[list[str]]:
    """Run each (codes, calls) job in its own episode, all in one `call_batch` round trip."""
    episodes = [runtime.episode(codes) for codes, _ in jobs]
    requests = [
        (episode, name, arguments)
        for episode, (_, calls) in zip(episodes, jobs, strict=True)
        for name, arguments in calls
    ]
    outputs = iter(runtime.call_batch(requests))
    for episode in episodes:
        episode.close()
    return [[next(outputs) for _ in calls] for _, calls in jobs]


def verify_outputs(draft: Draft, gold_outputs: Sequence[str], probe_outputs: Sequence[str]) -> None:
    """Raise `Rejected("deploy", reason)` unless the outputs prove the environment solvable and robust."""
    subs = draft.sub_questions
    for index, (sub, output) in enumerate(zip(subs, gold_outputs, strict=True)):
        tool = draft.tool_of[index]
        if output.startswith(TOOL_ERROR_PREFIX):
            raise Rejected("deploy", f"gold call {index} ({tool}) crashed: {output[:200]}")
        if not answer_verify(output, sub.answer):
            raise Rejected(
                "deploy", f"gold call {index} ({tool}) does not return sub-answer {sub.answer!r}: {output[:200]}"
            )
        for other, other_sub in enumerate(subs):
            if other != index and other not in sub.depends_on and answer_verify(output, other_sub.answer):
                raise Rejected(
                    "deploy", f"gold call {index} ({tool}) also contains sub-answer {other} {other_sub.answer!r}"
                )
    for dependent, sub in enumerate(subs):
        arguments = json.dumps(draft.gold_arguments[dependent], ensure_ascii=False)
        for needed in sub.depends_on:
            if subs[needed].answer not in arguments:
                raise Rejected("deploy", f"gold call {dependent} does not use the answer of sub-question {needed}")
    score = EpisodeScore.start(draft.unsolved_set())
    for call, output in zip(draft.gold_calls(), gold_outputs, strict=True):
        score.add_turn({"role": "assistant", "tool_calls": [call]}, [output])
    if score.solve_f1 != 1.0:
        raise Rejected("deploy", f"gold trajectory scores Solve-F1 {score.solve_f1:.3f}, not 1.0")
    if draft.aggregation == "last" and not answer_verify(gold_outputs[-1], draft.answer):
        raise Rejected("deploy", f"final answer {draft.answer!r} is not in the last gold output")
    expected = final_answer(draft)
    if draft.aggregation != "last" and expected is not None and expected != draft.answer:
        raise Rejected("deploy", f"final answer {draft.answer!r} does not follow from the sub-answers ({expected!r})")
    for (tool, bad_arguments), output in zip(probe_calls(draft), probe_outputs, strict=True):
        if output.startswith(TOOL_ERROR_PREFIX):
            raise Rejected("deploy", f"{tool} crashes on bad arguments {bad_arguments}: {output[:200]}")
        lowered = output.lower()
        if not any(word in lowered for word in ("error", "not found", "not_found", "invalid", "missing", "no ")):
            raise Rejected("deploy", f"{tool} accepts bad arguments {bad_arguments} without an error: {output[:200]}")
        if any(answer_verify(output, answer) for answer in draft.unsolved_set().get(tool, [])):
            raise Rejected("deploy", f"{tool} reveals a gold sub-answer for bad arguments {bad_arguments}")
