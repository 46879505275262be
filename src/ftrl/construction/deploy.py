"""Stage 5, localized deployment: write code for every tool, then prove the environment works by running it.

Code (procedural): one fixed function body per tool; only a literal header differs (the parameter spec and a
small table of records: the entities the gold calls ask about plus decoys, as one JSON string literal, which
compiles several times faster than the same data as a Python literal). The body validates every argument
and returns error dicts for bad ones, the requested fact inside a realistic reply for a known entity, and a
"not found" reply otherwise.

Verification is shared by all backends (`ftrl.construction.verify`).
"""

from __future__ import annotations

import json
import random
from typing import Any

from ftrl.construction.base import Draft, Rejected, stage_rng
from ftrl.construction.verify import verify_each
from ftrl.construction.world import World
from ftrl.runtime.protocol import ToolRunner

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
