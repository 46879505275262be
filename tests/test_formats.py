"""Tool-call formats: reference `parse_qwen` quirks, deterministic ids, Llama-3.1, OpenAI normalisation, prompts."""

from __future__ import annotations

import json

import pytest

from ftrl.formats import (
    clean_response,
    fold_tool_turns,
    from_openai,
    get_format,
    parse_hermes,
    parse_llama31,
    render_hermes,
    render_llama31,
    render_tool_message,
    render_tool_system_prompt,
    to_openai,
)


def call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def names_and_args(message: dict) -> list[tuple[str, str]]:
    return [(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"] or []]


# --- hermes: reference parse_qwen semantics -------------------------------------------------------------------


def test_content_before_call_multiple_calls_and_trailing_text_dropped():
    text = "  Let me look.\n" + call("a", {"x": 1}) + "\n" + call("b", {"y": "é"}) + " thanks!"
    message = parse_hermes(text)
    assert message["role"] == "assistant"
    assert message["content"] == "Let me look."  # text before the first tag, stripped; " thanks!" is dropped
    assert names_and_args(message) == [("a", '{"x": 1}'), ("b", '{"y": "é"}')]  # non-ASCII kept


def test_call_at_start_gives_empty_content_and_no_tag_gives_stripped_text():
    assert parse_hermes(call("a", {}))["content"] == ""
    assert parse_hermes("  just an answer \n") == {"role": "assistant", "content": "just an answer", "tool_calls": None}


def test_missing_arguments_key_skips_the_call_and_no_call_keeps_whole_text():
    text = 'Hi <tool_call>\n{"name": "a"}\n</tool_call>\n'
    assert parse_hermes(text) == {"role": "assistant", "content": text.strip(), "tool_calls": None}
    mixed = '<tool_call>\n{"name": "a"}\n</tool_call>\n' + call("b", {"k": 2})
    assert names_and_args(parse_hermes(mixed)) == [("b", '{"k": 2}')]


def test_arguments_given_as_json_string_are_decoded_then_reserialised():
    text = '<tool_call>{"name": "a", "arguments": "{\\"k\\":  [1,2]}"}</tool_call>'
    assert names_and_args(parse_hermes(text)) == [("a", '{"k": [1, 2]}')]
    # quirk: a string that decodes to a non-object is kept as the call's arguments
    assert names_and_args(parse_hermes('<tool_call>{"name": "a", "arguments": "5"}</tool_call>')) == [("a", "5")]


def test_empty_name_malformed_json_and_null_arguments_are_skipped():
    for body in ('{"name": "", "arguments": {}}', '{"name": "a", "arguments": {', '{"name": "a", "arguments": null}'):
        assert parse_hermes(f"<tool_call>{body}</tool_call>")["tool_calls"] is None


def test_lstrip_strips_a_character_set_not_the_tag():
    # "call" consists only of characters from the set "<tool_call>", so it is eaten along with the tag ...
    quirk = parse_hermes('<tool_call>call {"name": "a", "arguments": {}}</tool_call>')
    assert names_and_args(quirk) == [("a", "{}")]
    doubled = parse_hermes('<tool_call><tool_call>{"name": "a", "arguments": {}}</tool_call>')
    assert names_and_args(doubled) == [("a", "{}")]
    # ... but "data" starts with "d", which is not in the set, so JSON decoding fails and the call is skipped
    assert parse_hermes('<tool_call>data {"name": "a", "arguments": {}}</tool_call>')["tool_calls"] is None


def test_prose_between_calls_hides_the_following_call():
    text = call("a", {}) + " and then " + call("b", {})
    assert names_and_args(parse_hermes(text)) == [("a", "{}")]  # piece " and then <tool_call>..." is skipped


def test_one_tool_only_keeps_the_first_piece():
    assert names_and_args(parse_hermes(call("a", {}) + call("b", {}), one_tool_only=True)) == [("a", "{}")]


def test_call_ids_are_deterministic_and_distinct_within_a_message():
    text = call("a", {"x": 1}) + call("a", {"x": 1})
    first, second = parse_hermes(text), parse_hermes(text)
    ids = [c["id"] for c in first["tool_calls"]]
    assert ids == [c["id"] for c in second["tool_calls"]]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)


def test_clean_response_strips_end_tokens_in_reference_order():
    assert clean_response(" x <|im_end|>\n") == "x"
    assert clean_response("x<|im_end|><|endoftext|>") == "x"
    # endoftext is only removed when it is last, before im_end is looked at
    assert clean_response("x<|endoftext|><|im_end|>") == "x<|endoftext|>"


def test_render_hermes_round_trips():
    message = parse_hermes("Checking.\n" + call("a", {"q": "Prüm"}) + "\n" + call("b", {}))
    text = render_hermes(message)
    assert text == 'Checking.\n<tool_call>\n{"name": "a", "arguments": {"q": "Prüm"}}\n</tool_call>\n' + call("b", {})
    assert parse_hermes(text) == message


# --- llama 3.1 ------------------------------------------------------------------------------------------------


def test_llama31_bare_json_with_trailing_token_and_arguments_alias():
    message = parse_llama31('{"name": "a", "parameters": {"x": 1}}<|eom_id|>')
    assert message["content"] == "" and names_and_args(message) == [("a", '{"x": 1}')]
    assert names_and_args(parse_llama31('{"name": "a", "arguments": "{\\"x\\": 2}"}')) == [("a", '{"x": 2}')]


def test_llama31_python_tag_content_lists_and_one_tool_only():
    text = 'Sure. <|python_tag|>[{"name": "a", "parameters": {}}, {"name": "b", "parameters": {"y": 1}}]'
    message = parse_llama31(text)
    assert message["content"] == "Sure." and names_and_args(message) == [("a", "{}"), ("b", '{"y": 1}')]
    assert names_and_args(parse_llama31(text, one_tool_only=True)) == [("a", "{}")]


def test_llama31_prose_and_invalid_calls_stay_content():
    for text in ('I think {"name": "a", "parameters": {}} works', '{"name": "a"}', '{"name": "a", "parameters": '):
        assert parse_llama31(text) == {"role": "assistant", "content": text.strip(), "tool_calls": None}


def test_llama31_render_round_trips():
    single = parse_llama31('{"name": "a", "parameters": {"x": 1}}')
    assert render_llama31(single) == '{"name": "a", "parameters": {"x": 1}}'
    several = parse_llama31(
        'Hm<|python_tag|>{"name": "a", "parameters": {}}<|python_tag|>{"name": "b", "parameters": {}}'
    )
    tag = "<|python_tag|>"
    assert (
        render_llama31(several) == f'Hm{tag}{{"name": "a", "parameters": {{}}}}{tag}{{"name": "b", "parameters": {{}}}}'
    )
    assert parse_llama31(render_llama31(several)) == several


def test_registry():
    assert get_format("hermes").parse(call("a", {}))["tool_calls"][0]["function"]["name"] == "a"
    assert (
        get_format("llama31").render(parse_llama31('{"name": "a", "parameters": {}}'))
        == '{"name": "a", "parameters": {}}'
    )
    with pytest.raises(ValueError, match="unknown tool-call format"):
        get_format("mistral")


# --- openai ---------------------------------------------------------------------------------------------------


def test_from_openai_normalises_arguments_ids_and_content():
    raw = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "srv1", "type": "function", "function": {"name": "a", "arguments": {"x": "é"}}},
            {"type": "function", "function": {"name": "b", "arguments": ""}},
            {"id": "srv3", "type": "function", "function": {"name": "c", "arguments": "null"}},
            {"id": "srv4", "type": "function", "function": {"name": "d", "arguments": "{broken"}},
        ],
    }
    message = from_openai(raw)
    assert message["content"] is None
    assert names_and_args(message) == [("a", '{"x": "é"}'), ("b", "{}"), ("c", "{}"), ("d", "{broken")]
    ids = [c["id"] for c in message["tool_calls"]]
    assert ids[0] == "srv1" and ids[1].startswith("call_") and ids[1] == from_openai(raw)["tool_calls"][1]["id"]
    assert len(from_openai(raw, one_tool_only=True)["tool_calls"]) == 1
    assert from_openai({"role": "assistant", "content": "hi", "tool_calls": []})["tool_calls"] is None


def test_from_openai_accepts_sdk_objects():
    class SdkMessage:
        def model_dump(self):
            return {"role": "assistant", "content": "hello", "tool_calls": None}

    assert from_openai(SdkMessage()) == {"role": "assistant", "content": "hello", "tool_calls": None}


def test_to_openai_replaces_null_content_and_drops_empty_calls():
    message = parse_hermes(call("a", {"x": 1}))
    message["content"] = None
    sent = to_openai(message)
    assert sent["content"] == "" and sent["tool_calls"][0]["function"] == {"name": "a", "arguments": '{"x": 1}'}
    assert to_openai({"role": "assistant", "content": None, "tool_calls": None}) == {"role": "assistant", "content": ""}
    assert to_openai({"role": "assistant", "content": None}, null_content=None)["content"] is None


# --- prompts for templates without tool support ----------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather of a city", "parameters": {}}}]


def test_system_prompt_lists_tools_and_format_with_one_worked_example():
    prompt = render_tool_system_prompt(TOOLS)
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in prompt
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in prompt
    example = prompt[prompt.index("# Example") :]
    # the worked example's call is exactly what the parser accepts: one call to the made-up tool
    calls = parse_hermes(example)["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["planet_fact_lookup"]
    assert "<tool_response>" in example
    assert "# Example" not in render_tool_system_prompt(TOOLS, example=False)


def test_llama31_system_prompt_example_parses_with_llama31_parser():
    prompt = render_tool_system_prompt(TOOLS, style="llama31")
    example_call = prompt.split("Assistant:\n", 1)[1].split("\n", 1)[0]
    assert names_and_args(parse_llama31(example_call)) == [
        ("planet_fact_lookup", '{"planet": "Mars", "fact": "moons"}')
    ]
    with pytest.raises(ValueError, match="unknown tool prompt style"):
        render_tool_system_prompt(TOOLS, style="xml")


def test_tool_results_become_user_turns_grouped_like_qwen():
    assistant = parse_hermes(call("a", {}) + call("b", {}))
    messages = [
        {"role": "user", "content": "q"},
        assistant,
        {"role": "tool", "content": "r1", "tool_call_id": "x"},
        {"role": "tool", "content": "r2", "tool_call_id": "y"},
        {"role": "assistant", "content": "done"},
    ]
    assert render_tool_message("r1") == {"role": "user", "content": "<tool_response>\nr1\n</tool_response>"}
    assert fold_tool_turns(messages) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": render_hermes(assistant)},
        {"role": "user", "content": "<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response>"},
        {"role": "assistant", "content": "done"},
    ]
