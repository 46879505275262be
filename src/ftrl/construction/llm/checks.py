"""Validation of what the model proposes, stage by stage; each failure is an `Invalid` with a readable reason.

These checks are why an LLM-built environment can be trusted as much as a procedural one: a decomposition
must have the shape its scenario names, and a tool schema must be a well-formed OpenAI function that the
policy model and `validate_environment` accept.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

from ftrl.construction.base import SubQuestion
from ftrl.reward.match import normalize

JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ENUM_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


class Invalid(ValueError):
    """A model reply parsed but does not meet the stage's requirements."""


def as_text(value: Any, what: str) -> str:
    """A non-empty string field; numbers are accepted and written as text (answers such as `1962`)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise Invalid(f"{what} must be a non-empty string, got {value!r}")
    return str(value).strip()


def parse_sub_questions(items: Any) -> list[SubQuestion]:
    """Sub-questions from `[{question|text, answer, depends_on}]`; dependencies must point to earlier items."""
    if not isinstance(items, list) or not items:
        raise Invalid("'sub_questions' must be a non-empty list")
    if len(items) > 12:
        raise Invalid(f"{len(items)} sub-questions; at most 12 are allowed")
    subs = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"sub-question {number} is not an object")
        text = as_text(item.get("question", item.get("text")), f"sub-question {number} 'question'")
        answer = as_text(item.get("answer"), f"sub-question {number} 'answer'")
        depends = item.get("depends_on") or []
        if not isinstance(depends, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in depends):
            raise Invalid(f"sub-question {number} 'depends_on' must be a list of sub-question indices")
        if any(not 0 <= d < number for d in depends):
            raise Invalid(
                f"sub-question {number} depends on {depends}; only earlier sub-questions (0..{number - 1}) may be used"
            )
        subs.append(SubQuestion(text, answer, sorted(set(depends))))
    seen: dict[str, int] = {}
    for number, sub in enumerate(subs):
        key = normalize(sub.answer)
        if key in seen:
            raise Invalid(f"sub-questions {seen[key]} and {number} have the same answer {sub.answer!r}")
        seen[key] = number
    return subs


def scenario_of(subs: list[SubQuestion]) -> str:
    """The scenario a dependency structure has: how many independent starts, and whether any step chains."""
    roots = sum(1 for sub in subs if not sub.depends_on)
    chained = any(sub.depends_on for sub in subs)
    if len(subs) == 1:
        return "single_hop"
    if not chained:
        return "parallel_single_hop"
    return "multi_hop" if roots == 1 else "parallel_multi_hop"


def check_tool_schema(tool: Any, what: str) -> dict[str, Any]:
    """A well-formed OpenAI function tool, returned in the `{"type": "function", "function": ...}` wrapping."""
    if isinstance(tool, dict) and "function" not in tool and "name" in tool:
        tool = {"type": "function", "function": tool}
    if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
        raise Invalid(f"{what} is not an OpenAI tool schema ({{'type': 'function', 'function': {{...}}}})")
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise Invalid(f"{what} has name {name!r}; it must be a Python identifier (letters, digits, _)")
    if not isinstance(function.get("description"), str) or not function["description"].strip():
        raise Invalid(f"{what} ({name}) has no description")
    parameters = function.get("parameters")
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise Invalid(f"{what} ({name}): 'parameters' must be an object schema")
    properties = parameters.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise Invalid(f"{what} ({name}): 'parameters.properties' must list at least one parameter")
    for param, spec in properties.items():
        _check_parameter(f"{what} ({name}) parameter {param!r}", param, spec)
    required = parameters.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise Invalid(f"{what} ({name}): 'required' must list names from 'properties', got {required!r}")
    if not required:
        raise Invalid(f"{what} ({name}) has no required parameter; require at least the one that says what to look up")
    return {
        "type": "function",
        "function": {**function, "parameters": {**parameters, "type": "object", "required": required}},
    }


def _check_parameter(what: str, name: str, spec: Any) -> None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise Invalid(f"{what} is not a valid Python argument name")
    if not isinstance(spec, dict):
        raise Invalid(f"{what} must be a schema object")
    kind = spec.get("type")
    if kind not in JSON_TYPES:
        raise Invalid(f"{what} has type {kind!r}; expected one of {', '.join(sorted(JSON_TYPES))}")
    if not isinstance(spec.get("description"), str) or not spec["description"].strip():
        raise Invalid(f"{what} has no description")
    if "enum" in spec:
        values = spec["enum"]
        expected = _ENUM_TYPES.get(kind)
        if not isinstance(values, list) or not values or expected is None:
            raise Invalid(f"{what}: 'enum' must be a non-empty list on a string, integer, number or boolean parameter")
        if any(not isinstance(v, expected) or (kind != "boolean" and isinstance(v, bool)) for v in values):
            raise Invalid(f"{what}: enum values {values!r} do not all have type {kind}")


def check_tools(tools: Any, what: str = "tool") -> list[dict[str, Any]]:
    """A list of valid tool schemas with distinct names."""
    if not isinstance(tools, list) or not tools:
        raise Invalid(f"'{what}s' must be a non-empty list of tool schemas")
    checked = [check_tool_schema(tool, f"{what} {number}") for number, tool in enumerate(tools)]
    names = [tool["function"]["name"] for tool in checked]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise Invalid(f"tool names must be distinct; repeated: {', '.join(duplicates)}")
    return checked


def properties_of(tool: dict[str, Any]) -> dict[str, Any]:
    return tool["function"]["parameters"]["properties"]


def check_arguments(arguments: Any, tool: dict[str, Any], what: str) -> dict[str, Any]:
    """Gold arguments that the tool's schema accepts: known names, required ones present, types and enums right."""
    name = tool["function"]["name"]
    if not isinstance(arguments, dict):
        raise Invalid(f"{what}: arguments for {name} must be an object")
    properties = properties_of(tool)
    unknown = [key for key in arguments if key not in properties]
    if unknown:
        raise Invalid(f"{what}: {name} has no parameter(s) {', '.join(unknown)}")
    missing = [key for key in tool["function"]["parameters"]["required"] if key not in arguments]
    if missing:
        raise Invalid(f"{what}: required parameter(s) {', '.join(missing)} of {name} missing")
    for key, value in arguments.items():
        spec = properties[key]
        if not _has_type(value, spec["type"]):
            raise Invalid(f"{what}: {name}({key}={value!r}) does not have type {spec['type']}")
        if "enum" in spec and value not in spec["enum"]:
            raise Invalid(f"{what}: {name}({key}={value!r}) is not one of {spec['enum']}")
    return arguments


def _has_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    python = {"string": str, "boolean": bool, "array": list, "object": dict}[kind]
    return isinstance(value, python)
