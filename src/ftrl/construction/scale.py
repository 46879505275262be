"""Stage 4, complexity scaling: make tools look and behave like real APIs, and add tools nobody needs.

- functional generalization: a single-fact tool becomes a lookup over a field parameter;
- parameter expansion: optional parameters up to a drawn count (the paper averages about 7 per tool);
- type generalization: those parameters span enum, boolean, integer, number, array and object, with defaults;
- distractor tools: unneeded tools, some from the same domain as a needed one (near misses), up to a drawn
  total number of tools (58% of the tools in the paper's test set are distractors).
"""

from __future__ import annotations

import random
from typing import Any

from ftrl.construction.base import Draft, stage_rng
from ftrl.construction.config import Difficulty
from ftrl.construction.document import fact_tool, lookup_tool
from ftrl.construction.integrate import FIELD_PARAMETERS, check_tools, unused_lookup_name
from ftrl.construction.world import World

#: Optional parameters that tools may grow, by type family; codes validate them, answers never depend on them.
STRING_PARAMETERS: dict[str, dict[str, Any]] = {
    "region": {"type": "string", "description": "Restrict the search to a region."},
    "request_tag": {"type": "string", "description": "Free-form tag echoed back for tracing."},
    "reference_date": {"type": "string", "description": "Date the record should be valid on (YYYY-MM-DD)."},
    "alternate_name": {"type": "string", "description": "Another spelling or former name to try as well."},
    "source_registry": {"type": "string", "description": "Name of a preferred registry."},
    "notes": {"type": "string", "description": "Context for the request, kept in the audit log."},
}
FLAG_PARAMETERS: dict[str, dict[str, Any]] = {
    "include_sources": {
        "type": "boolean",
        "description": "Whether to list the registries consulted.",
        "default": False,
    },
    "include_history": {"type": "boolean", "description": "Whether to add earlier recorded values.", "default": False},
    "fuzzy_match": {
        "type": "boolean",
        "description": "Whether to tolerate small spelling differences.",
        "default": False,
    },
    "use_cache": {"type": "boolean", "description": "Whether cached records may be served.", "default": True},
    "include_metadata": {"type": "boolean", "description": "Whether to attach record metadata."},
}
OTHER_PARAMETERS: dict[str, dict[str, Any]] = {
    "as_of_year": {"type": "integer", "description": "Report the record as of this year; latest when omitted."},
    "max_results": {"type": "integer", "description": "Maximum number of matching records.", "default": 1},
    "min_confidence": {
        "type": "number",
        "description": "Minimum confidence score of a record (0 to 1).",
        "default": 0.5,
    },
    "timeout_seconds": {"type": "number", "description": "How long to wait for the registry."},
    "extra_fields": {"type": "array", "items": {"type": "string"}, "description": "Extra metadata fields to include."},
    "source_ids": {"type": "array", "items": {"type": "integer"}, "description": "Only consult these source ids."},
    "filters": {
        "type": "object",
        "properties": {"verified_only": {"type": "boolean"}, "registry": {"type": "string"}},
        "description": "Additional record filters.",
    },
    "date_range": {
        "type": "object",
        "properties": {"start": {"type": "string"}, "end": {"type": "string"}},
        "description": "Only records updated within this range (YYYY-MM-DD).",
    },
}
ENUM_PARAMETERS: dict[str, dict[str, Any]] = {
    "language": {
        "type": "string",
        "enum": ["en", "fr", "de", "es", "pt"],
        "description": "Language of the answer.",
        "default": "en",
    },
    "response_format": {
        "type": "string",
        "enum": ["json", "text", "table"],
        "description": "Shape of the reply.",
        "default": "json",
    },
    "detail_level": {
        "type": "string",
        "enum": ["basic", "standard", "full"],
        "description": "How much detail to return.",
    },
    "sort_order": {
        "type": "string",
        "enum": ["relevance", "newest", "oldest"],
        "description": "Order of matching records.",
    },
    "match_mode": {
        "type": "string",
        "enum": ["exact", "prefix", "fuzzy"],
        "description": "How names are matched.",
        "default": "exact",
    },
    "record_status": {
        "type": "string",
        "enum": ["current", "historical", "any"],
        "description": "Which records to consult.",
    },
}
#: Families of optional parameters and their weights, tuned so the type mix resembles the paper's tools
#: (about 70% strings, 18% booleans; about 28% of parameters carry an enum).
FAMILIES = ((ENUM_PARAMETERS, 0.3), (STRING_PARAMETERS, 0.27), (FLAG_PARAMETERS, 0.24), (OTHER_PARAMETERS, 0.19))
#: Probability that a solver's single-fact tool is generalized to a lookup over a field parameter.
GENERALIZE_PROBABILITY = 0.2


class Scale:
    """Generalizes, expands and types tool parameters, then adds distractor tools."""

    name = "scale"

    def __init__(self, world: World, domains: tuple[str, ...], difficulty: Difficulty):
        self.world, self.domains, self.difficulty = world, domains, difficulty

    def run(self, draft: Draft) -> Draft:
        rng = stage_rng(draft, self.name)
        meta = draft.notes["tool_meta"]
        self._generalize(draft, rng)
        d = self.difficulty
        wanted = max(d.min_distractors, rng.randint(d.min_tools, d.max_tools) - len(draft.tools))
        draft.distractors = []
        for schema, tool_meta in self._distractors(draft, rng, wanted):
            name = schema["function"]["name"]
            meta[name] = tool_meta
            draft.tools.append(schema)
            draft.distractors.append(name)
        for tool in draft.tools:
            self._expand(tool, rng)
        rng.shuffle(draft.tools)
        check_tools(draft, self.name)
        return draft

    def _generalize(self, draft: Draft, rng: random.Random) -> None:
        meta = draft.notes["tool_meta"]
        for position, tool in enumerate(draft.tools):
            old = tool["function"]["name"]
            if meta[old]["field_parameter"] or rng.random() >= GENERALIZE_PROBABILITY:
                continue
            domain = meta[old]["domain"]
            name = unused_lookup_name(rng, self.world.spec(domain).noun, set(draft.tool_names))
            draft.tools[position], meta[name] = lookup_tool(self.world, domain, name, rng.choice(FIELD_PARAMETERS))
            for index, served in enumerate(draft.tool_of):
                if served == old:
                    draft.tool_of[index] = name
                    draft.gold_arguments[index][meta[name]["field_parameter"]] = meta[old]["fields"][0]
            del meta[old]

    def _distractors(self, draft: Draft, rng: random.Random, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Unneeded tools: mostly single-fact tools on fields no solver returns, half of them near misses."""
        meta = draft.notes["tool_meta"]
        used = {(m["domain"], f) for m in meta.values() for f in m["fields"]}
        near = sorted({m["domain"] for m in meta.values()})
        taken = set(draft.tool_names)
        made: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for _ in range(count * 4):
            if len(made) == count:
                break
            domain = rng.choice(near) if rng.random() < 0.5 else rng.choice(self.domains)
            spec = self.world.spec(domain)
            if rng.random() < GENERALIZE_PROBABILITY:
                name = unused_lookup_name(rng, spec.noun, taken)
                schema, tool_meta = lookup_tool(self.world, domain, name, rng.choice(FIELD_PARAMETERS))
            else:
                schema, tool_meta = fact_tool(self.world, domain, rng.choice(_fields(spec)))
            # a distractor must never return a fact some sub-question needs: that would be a trap, not noise
            if schema["function"]["name"] in taken or any((domain, f) in used for f in tool_meta["fields"]):
                continue
            taken.add(schema["function"]["name"])
            used.update((domain, f) for f in tool_meta["fields"])
            made.append((schema, tool_meta))
        return made

    def _expand(self, tool: dict[str, Any], rng: random.Random) -> None:
        """Add optional parameters, drawn family by family, until the tool has a drawn count."""
        properties = tool["function"]["parameters"]["properties"]
        target = rng.randint(self.difficulty.min_params, self.difficulty.max_params)
        target = min(target, len(properties) + sum(len(family) for family, _ in FAMILIES))
        families = [family for family, _ in FAMILIES]
        weights = [weight for _, weight in FAMILIES]
        while len(properties) < target:
            family = rng.choices(families, weights)[0]
            free = [name for name in family if name not in properties]
            if free:
                name = rng.choice(free)
                properties[name] = _copy(family[name])


def _fields(spec: Any) -> list[str]:
    return [item.name for item in (*spec.attributes, *spec.relations)]


def _copy(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that later edits of one tool never leak into another (schemas nest two levels)."""
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in schema.items()}
