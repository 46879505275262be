"""Pieces of the LLM backend that need no server: reply parsing, schema checks, the cache."""

from __future__ import annotations

import json

import pytest

from ftrl.construction.llm.checks import Invalid, check_arguments, check_tool_schema, parse_sub_questions, scenario_of
from ftrl.construction.llm.client import ResponseCache
from ftrl.construction.llm.extract import MalformedOutput, drop_code_blocks, extract_code, extract_json


@pytest.mark.parametrize(
    "reply",
    [
        '{"a": 1, "b": [true, null]}',
        'Sure! Here it is:\n```json\n{"a": 1, "b": [true, null]}\n```\nAnything else?',
        "<think>I should answer {with json}.</think>\n{'a': 1, 'b': [True, None],}",
        'The answer is {"a": 1, // one\n "b": [true, null,],} as requested.',
        '```\n{"a": 1, "b": [true, null]}\n```',
    ],
)
def test_extract_json_reads_what_models_write(reply):
    assert extract_json(reply) == {"a": 1, "b": [True, None]}


def test_extract_json_keeps_string_contents_and_skips_code_dicts():
    assert extract_json("{'text': \"it's {not} a brace, // nor a comment\"}") == {
        "text": "it's {not} a brace, // nor a comment"
    }
    reply = '```python\ndef f():\n    return {"error": "x"}\n```\n```json\n{"calls": []}\n```'
    assert extract_json(drop_code_blocks(reply)) == {"calls": []}


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "[1, 2]", "{broken: 'x'"])
def test_extract_json_refuses_replies_without_an_object(reply):
    with pytest.raises(MalformedOutput):
        extract_json(reply)


def test_extract_code_takes_the_python_block():
    reply = "Here:\n```json\n{}\n```\n```python\ndef tool(x=None):\n    return x\n```"
    assert extract_code(reply) == "def tool(x=None):\n    return x\n"
    with pytest.raises(MalformedOutput, match="python code block"):
        extract_code("def tool(): pass")


def test_sub_questions_and_scenarios():
    chain = parse_sub_questions(
        [{"question": "a?", "answer": "A"}, {"text": "b A?", "answer": 1962, "depends_on": [0]}]
    )
    assert [s.answer for s in chain] == ["A", "1962"] and scenario_of(chain) == "multi_hop"
    assert scenario_of(chain[:1]) == "single_hop"
    parallel = parse_sub_questions([{"question": "a?", "answer": "A"}, {"question": "b?", "answer": "B"}])
    assert scenario_of(parallel) == "parallel_single_hop"
    both = parse_sub_questions(
        [{"question": q, "answer": q.upper(), "depends_on": d} for q, d in (("a", []), ("b", [0]), ("c", []))]
    )
    assert scenario_of(both) == "parallel_multi_hop"
    with pytest.raises(Invalid, match="only earlier sub-questions"):
        parse_sub_questions([{"question": "a?", "answer": "A", "depends_on": [0]}])
    with pytest.raises(Invalid, match="same answer"):
        parse_sub_questions([{"question": "a?", "answer": "Paris"}, {"question": "b?", "answer": "paris"}])


def test_tool_schema_and_argument_checks():
    tool = check_tool_schema(
        {
            "name": "city_lookup",
            "description": "d",
            "parameters": {
                "type": "object",
                "required": ["city_name"],
                "properties": {
                    "city_name": {"type": "string", "description": "d"},
                    "units": {"type": "string", "description": "d", "enum": ["metric", "imperial"]},
                    "year": {"type": "integer", "description": "d"},
                },
            },
        },
        "tool 0",
    )
    assert tool["type"] == "function"
    assert check_arguments({"city_name": "Kell", "year": 2001}, tool, "gold") == {"city_name": "Kell", "year": 2001}
    for arguments, message in (
        ({"year": 2001}, "required parameter"),
        ({"city_name": "Kell", "units": "kelvin"}, "is not one of"),
        ({"city_name": "Kell", "year": "2001"}, "does not have type integer"),
        ({"city_name": "Kell", "zoom": 3}, "has no parameter"),
    ):
        with pytest.raises(Invalid, match=message):
            check_arguments(arguments, tool, "gold")
    bad = json.loads(json.dumps(tool))
    bad["function"]["parameters"]["properties"]["units"]["enum"] = [1, 2]
    with pytest.raises(Invalid, match="enum values"):
        check_tool_schema(bad, "tool 0")
    bad["function"]["name"] = "class"
    with pytest.raises(Invalid, match="Python identifier"):
        check_tool_schema(bad, "tool 0")


def test_cache_is_keyed_by_the_whole_request_and_survives_torn_files(tmp_path):
    cache = ResponseCache(tmp_path)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}
    key = cache.key(request)
    assert key != cache.key({**request, "temperature": 0.0}) and key == cache.key(dict(reversed(request.items())))
    assert cache.get(key) is None
    cache.put(key, {"text": "hello"})
    assert cache.get(key) == {"text": "hello"}
    (tmp_path / key[:2] / f"{key}.json").write_text('{"text": "hel')  # a write cut short is a miss, not a crash
    assert cache.get(key) is None
    assert not list(tmp_path.rglob(".*.tmp"))
