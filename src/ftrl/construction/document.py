"""Stage 2, tool documentation (procedural): one OpenAI tool schema per sub-question.

Each sub-question asks one field of one entity, so its tool takes the entity's name and returns that field
(`get_city_population(city_name)`). Two sub-questions asking the same field of the same domain get identical
schemas here; integration merges them.
"""

from __future__ import annotations

from typing import Any

from ftrl.construction.base import Draft, Rejected
from ftrl.construction.world import World


def key_parameter(noun: str) -> str:
    """The required parameter naming the entity (`city_name`)."""
    return f"{noun}_name"


def field_phrase(world: World, domain: str, field: str) -> str:
    spec = world.spec(domain)
    for item in spec.fields:
        if item.name == field:
            return item.phrase
    raise KeyError(f"{domain} has no field {field!r}")


def fact_tool(world: World, domain: str, field: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A single-fact tool (one required string parameter, the entity's name) and its construction metadata.

    The metadata (`domain`, `fields` it can return, `field_parameter` choosing among them) lives in
    `draft.notes["tool_meta"]`, keyed by tool name, for later stages to scale and deploy the tool.
    """
    noun = world.spec(domain).noun
    key = key_parameter(noun)
    schema = {
        "type": "function",
        "function": {
            "name": f"get_{noun}_{field}",
            "description": (
                f"Returns {field_phrase(world, domain, field)} of a {noun.replace('_', ' ')}, given its exact name."
            ),
            "parameters": {
                "type": "object",
                "properties": {key: {"type": "string", "description": f"The full name of the {noun}."}},
                "required": [key],
            },
        },
    }
    return schema, {"domain": domain, "fields": [field], "field_parameter": None}


class ProceduralDocument:
    """Writes one tool schema per sub-question (`tools`, `tool_of`) and the gold arguments of each call."""

    name = "document"

    def __init__(self, world: World):
        self.world = world

    def run(self, draft: Draft) -> Draft:
        draft.tools, draft.tool_of, draft.gold_arguments = [], [], []
        meta = draft.notes.setdefault("tool_meta", {})
        for sub in draft.sub_questions:
            facts = sub.facts
            if facts.get("domain") not in self.world.entities:
                raise Rejected(self.name, f"sub-question {sub.text!r} names no known domain")
            tool, tool_meta = fact_tool(self.world, facts["domain"], facts["field"])
            meta[tool["function"]["name"]] = tool_meta
            draft.tools.append(tool)
            draft.tool_of.append(tool["function"]["name"])
            draft.gold_arguments.append({key_parameter(self.world.spec(facts["domain"]).noun): facts["entity"]})
        return draft


def lookup_tool(world: World, domain: str, name: str, field_parameter: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tool over a parameter: returns any field of the domain, chosen by an enum `field_parameter`."""
    spec = world.spec(domain)
    fields = [item.name for item in spec.fields]
    key = key_parameter(spec.noun)
    noun = spec.noun.replace("_", " ")
    schema = {
        "type": "function",
        "function": {
            "name": name,
            "description": (
                f"Looks up one recorded fact about a {noun} ({', '.join(f.replace('_', ' ') for f in fields)})."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    key: {"type": "string", "description": f"The full name of the {noun}."},
                    field_parameter: {"type": "string", "enum": fields, "description": "Which fact to return."},
                },
                "required": [key, field_parameter],
            },
        },
    }
    return schema, {"domain": domain, "fields": fields, "field_parameter": field_parameter}
