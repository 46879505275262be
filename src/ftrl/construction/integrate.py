"""Stage 3, tool integration: merge tools of overlapping function, so one tool may serve several sub-questions.

Identical tools (same field of the same domain) always become one; distinct single-fact tools of one domain
are merged, with probability `merge_probability`, into a lookup over a field parameter. The unsolved set then
lists several answers under the merged tool, as in the paper's data.
"""

from __future__ import annotations

from typing import Any

from ftrl.construction.base import Draft, Rejected, stage_rng
from ftrl.construction.config import Difficulty
from ftrl.construction.document import lookup_tool
from ftrl.construction.world import World

LOOKUP_SUFFIXES = ("lookup", "registry", "directory", "records", "database", "profile_search", "fact_finder")
FIELD_PARAMETERS = ("attribute", "field", "info_type", "property", "fact")


def unused_lookup_name(rng: Any, noun: str, taken: set[str]) -> str:
    """A fresh lookup-tool name for a domain (`city_registry`, ...)."""
    for suffix in rng.sample(LOOKUP_SUFFIXES, len(LOOKUP_SUFFIXES)):
        if f"{noun}_{suffix}" not in taken:
            return f"{noun}_{suffix}"
    raise Rejected("integrate", f"no free tool name for {noun}")


def check_tools(draft: Draft, stage: str) -> None:
    """Every sub-question has a unique, existing tool whose schema accepts its gold arguments."""
    names = draft.tool_names
    if len(set(names)) != len(names):
        raise Rejected(stage, f"duplicate tool names {sorted(n for n in set(names) if names.count(n) > 1)}")
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in draft.tools}
    for index, (tool, arguments) in enumerate(zip(draft.tool_of, draft.gold_arguments, strict=True)):
        if tool not in schemas:
            raise Rejected(stage, f"sub-question {index} is served by unknown tool {tool!r}")
        params = schemas[tool]
        missing = set(params.get("required", [])) - set(arguments)
        unknown = set(arguments) - set(params["properties"])
        if missing or unknown:
            raise Rejected(
                stage,
                f"gold arguments of sub-question {index} do not fit {tool!r}: missing {missing}, unknown {unknown}",
            )


class Integrate:
    """Deduplicates identical tools and merges same-domain tools into lookups."""

    name = "integrate"

    def __init__(self, world: World, difficulty: Difficulty):
        self.world, self.difficulty = world, difficulty

    def run(self, draft: Draft) -> Draft:
        rng = stage_rng(draft, self.name)
        meta = draft.notes["tool_meta"]
        unique = {tool["function"]["name"]: tool for tool in draft.tools}
        by_domain: dict[str, list[str]] = {}
        for name in unique:
            by_domain.setdefault(meta[name]["domain"], []).append(name)
        renamed: dict[str, str] = {}
        for domain, names in by_domain.items():
            if len(names) < 2 or rng.random() >= self.difficulty.merge_probability:
                continue
            name = unused_lookup_name(rng, self.world.spec(domain).noun, set(unique))
            schema, meta[name] = lookup_tool(self.world, domain, name, rng.choice(FIELD_PARAMETERS))
            for old in names:
                renamed[old] = name
                del unique[old]
            unique[name] = schema
        for index, old in enumerate(draft.tool_of):
            if old in renamed:
                draft.tool_of[index] = new = renamed[old]
                draft.gold_arguments[index][meta[new]["field_parameter"]] = meta[old]["fields"][0]
        for old in renamed:
            del meta[old]
        draft.tools = list(unique.values())
        draft.notes[self.name] = {"merged": sorted(renamed)}
        check_tools(draft, self.name)
        return draft
