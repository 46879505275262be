"""Stage 5, localized deployment: write code for every tool, then prove the environment works by running it.

Code (procedural): one fixed function body per tool; only a literal header differs (the parameter spec and a
small table of records: the entities the gold calls ask about plus decoys, as one JSON string literal, which
compiles several times faster than the same data as a Python literal). The body validates every argument
and returns error dicts for bad ones, the requested fact inside a realistic reply for a known entity, and a
"not found" reply otherwise.

Verification (shared by all backends, `verify_outputs`): the environment's calls are executed in the isolated
runtime only (never in this process), and the draft is rejected unless
- every gold call returns its sub-answer under the reference matcher, and no gold call output contains the
  sub-answer of another sub-question it does not depend on (no accidental solves);
- replaying the gold calls scores Solve-F1 = 1.0 and the final answer follows from the sub-answers;
- calls with missing arguments and unknown entities return error or not-found replies instead of crashing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from ftrl.construction.base import Draft, Rejected
from ftrl.construction.decompose import final_answer, stage_rng
from ftrl.construction.world import World
from ftrl.reward.episode import EpisodeScore
from ftrl.reward.match import answer_verify
from ftrl.runtime import TOOL_ERROR_PREFIX
from ftrl.runtime.protocol import ToolRunner

#: An entity name no world contains (a missing entity must get a not-found reply).
MISSING_ENTITY = "Qqxq Nonexistent Entity"

_BODY = """    arguments = dict(locals())
    del arguments["json"], arguments["spec"]
    for name in spec["required"]:
        if arguments[name] is None:
            return {"error": "Missing required parameter '%s'." % name}
    for name, (kinds, allowed) in spec["types"].items():
        value = arguments[name]
        if value is not None and (type(value).__name__ not in kinds or (allowed and value not in allowed)):
            expected = "one of %s" % allowed if allowed else "of type %s" % kinds[0]
            return {"error": "Invalid parameter '%s': expected a value %s." % (name, expected)}
    query = arguments[spec["key"]]
    display, facts = spec["records"].get(" ".join(query.lower().split()), (None, None))
    if display is None:
        return {"status": "not_found", "message": "No %s named '%s' was found." % (spec["noun"], query)}
    field = arguments[spec["field_parameter"]] if spec["field_parameter"] else spec["fields"][0]
    label, unit = spec["labels"][field]
    if spec["style"] == "sentence":
        return "According to the %s, %s of %s is %s%s." % (spec["registry"], label, display, facts[field], unit)
    return {
        "status": "ok",
        spec["noun"]: display,
        field: facts[field],
        "unit": unit.strip() or None,
        "source": spec["registry"],
    }
"""
#: Python type names a JSON-schema type accepts (`bool` is not an integer here, unlike `isinstance`).
PYTHON_TYPES = {
    "string": ("str",),
    "integer": ("int",),
    "number": ("float", "int"),
    "boolean": ("bool",),
    "array": ("list",),
    "object": ("dict",),
}
REGISTRIES = (
    "Open Civic Registry",
    "Continental Records Office",
    "Atlas Data Service",
    "Federal Archive",
    "Global Index",
)


def tool_code(name: str, description: str, parameters: dict[str, Any], spec: dict[str, Any]) -> str:
    """Source of one tool: signature from the schema, a literal `spec` (types, records, labels), the fixed body."""
    properties = parameters["properties"]
    signature = ", ".join(f"{p}={properties[p].get('default')!r}" for p in properties)
    types = {p: (PYTHON_TYPES[schema["type"]], schema.get("enum")) for p, schema in properties.items()}
    spec = {**spec, "required": parameters.get("required", []), "types": types}
    doc = description.replace('"""', "'").replace("\\", "/")
    # the spec travels as one JSON string literal: compiling it is far cheaper than a nested dict literal
    literal = repr(json.dumps(spec, ensure_ascii=False))
    return f'def {name}({signature}):\n    """{doc}"""\n    import json\n\n    spec = json.loads({literal})\n' + _BODY


class ProceduralDeploy:
    """Writes code for every tool from the world's facts, then verifies the draft in the runtime.

    `run` verifies one draft per runtime round trip; the backend calls `write` for many drafts and
    `verify_each` once, which is what makes verified construction fast.
    """

    name = "deploy"

    def __init__(self, world: World, runtime: ToolRunner):
        self.world, self.runtime = world, runtime

    def run(self, draft: Draft) -> Draft:
        outcome = verify_each(self.runtime, [self.write(draft)])[0]
        if isinstance(outcome, Rejected):
            raise outcome
        return outcome

    def write(self, draft: Draft) -> Draft:
        rng = stage_rng(draft, self.name)
        meta = draft.notes["tool_meta"]
        wanted: dict[str, set[str]] = {}
        for tool, arguments in zip(draft.tool_of, draft.gold_arguments, strict=True):
            wanted.setdefault(tool, set()).update(v for v in arguments.values() if isinstance(v, str))
        draft.codes = {}
        for schema in draft.tools:
            function = schema["function"]
            name = function["name"]
            spec = self._spec(meta[name], wanted.get(name, set()), rng)
            draft.codes[name] = tool_code(name, function["description"], function["parameters"], spec)
        return draft

    def _spec(self, tool_meta: dict[str, Any], wanted: set[str], rng: random.Random) -> dict[str, Any]:
        """Records of the gold entities plus a few decoys, restricted to the fields the tool returns."""
        domain = tool_meta["domain"]
        table = self.world.entities[domain]
        names = [n for n in wanted if n in table]
        names += rng.sample(self.world.names(domain), 4)
        spec = self.world.spec(domain)
        labels = {}
        for item in spec.fields:
            if item.name in tool_meta["fields"]:
                unit = getattr(item, "unit", "")
                labels[item.name] = (item.phrase, f" {unit}" if unit else "")
        records = {
            " ".join(n.lower().split()): (n, {f: table[n][f] for f in tool_meta["fields"]}) for n in sorted(set(names))
        }
        return {
            "noun": spec.noun,
            "key": f"{spec.noun}_name",
            "field_parameter": tool_meta["field_parameter"],
            "fields": tool_meta["fields"],
            "labels": labels,
            "records": records,
            "registry": rng.choice(REGISTRIES),
            "style": "sentence" if rng.random() < 0.25 else "dict",
        }


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
