"""Tool runtime: reference-exact results and error texts, state handling, tau-bench gold-action replay."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from ftrl.runtime import RuntimeConfig, ToolRuntime, error_message, format_result, state_digest

TAU = Path(__file__).parents[1].parent / "shared" / "data" / "tau-bench"
DOMAIN_FILES = {"airline": ("flights", "reservations", "users"), "retail": ("orders", "products", "users")}


def reference_call(codes: dict[str, str], name: str, arguments: str, **kwargs: Any) -> str:
    """The reference's in-process path, reproduced as the oracle."""
    try:
        tool_args = json.loads(arguments)
        code = codes[name]
        namespace: dict[str, Any] = {}
        exec(code, namespace, namespace)
        if name not in namespace:
            raise NameError(f"name {name} is not defined")
        return format_result(namespace[name](**tool_args, **kwargs))
    except Exception as error:
        return error_message(name, str(error))


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig(workers=2, timeout_s=5)) as rt:
        yield rt


def test_format_result_follows_exact_type_rules():
    assert format_result({"a": "é"}) == '{"a": "é"}'
    assert format_result([1, None]) == "[1, null]"
    assert format_result("plain") == "plain"
    assert format_result(3) == "3"
    assert format_result(None) == "None"
    assert format_result(OrderedDict(a=1)) == "OrderedDict([('a', 1)])"  # subclasses are not JSON-dumped
    assert error_message("foo", KeyError("foo")) == "an error occured when call foo: 'foo'"


CODES = {
    "as_dict": "def as_dict(city, unit='c'):\n    return {'city': city, 'unit': unit, 'deg': '°'}",
    "as_list": "def as_list(n):\n    return list(range(n))",
    "as_str": "def as_str():\n    return 'hello'",
    "as_int": "def as_int(a, b):\n    return a * b",
    "as_none": "def as_none():\n    pass",
    "raises": "def raises(x):\n    raise ValueError(f'bad value {x}')",
    "other_name": "def something_else():\n    return 1",
    "syntax": "def syntax(:\n    pass",
    "top_level": "import json\nraise RuntimeError('at import')\ndef top_level():\n    return 1",
    "counter": "n = 0\ndef counter():\n    global n\n    n += 1\n    return n",
}
CASES = [
    ("as_dict", '{"city": "Paris"}'),
    ("as_list", '{"n": 3}'),
    ("as_str", "{}"),
    ("as_int", '{"a": 6, "b": 7}'),
    ("as_none", "{}"),
    ("unknown_tool", "{}"),
    ("as_int", "{not json"),
    ("as_int", "[1, 2]"),
    ("as_int", '"text"'),
    ("as_int", '{"a": 1}'),
    ("as_int", '{"a": 1, "b": 2, "c": 3}'),
    ("raises", '{"x": 5}'),
    ("other_name", "{}"),
    ("syntax", "{}"),
    ("top_level", "{}"),
    ("counter", "{}"),
    ("counter", "{}"),
]


def test_results_and_error_texts_match_reference(runtime):
    episode = runtime.episode(CODES)
    expected = [reference_call(CODES, name, arguments) for name, arguments in CASES]
    assert episode.call_many(CASES) == expected
    assert [episode.call(name, arguments) for name, arguments in CASES] == expected
    assert expected[5] == "an error occured when call unknown_tool: 'unknown_tool'"
    assert expected[-1] == "1"  # module globals never leak between calls


def test_mapping_arguments_and_truncation():
    with ToolRuntime(RuntimeConfig(workers=1, max_output_chars=50)) as rt:
        episode = rt.episode({"echo": "def echo(text):\n    return text"})
        assert episode.call("echo", {"text": "short"}) == "short"
        long = episode.call("echo", {"text": "y" * 200})
        assert long.startswith("y" * 50) and "[truncated 150 chars]" in long and len(long) < 100


def test_check_reports_definitions(runtime):
    report = runtime.check(
        {"good": "def good():\n    return 1", "missing": "x = 1", "syntax": "def (", "noncallable": "noncallable = 3"}
    )
    assert report["good"] is None
    assert report["missing"] == "NameError: name missing is not defined"
    assert report["syntax"].startswith("SyntaxError")
    assert report["noncallable"] == "TypeError: noncallable is not callable"


INC = {
    "inc": "def inc(data, key):\n    data[key] = data.get(key, 0) + 1\n    return data[key]",
    "plain": "def plain(x):\n    return x",
    "crash": "import os\ndef crash(data):\n    data['ghost'] = 1\n    os._exit(0)",
}


def test_state_is_passed_only_to_tools_that_accept_it(runtime):
    with runtime.episode(INC, {"a": 1}) as episode:
        assert episode.call("inc", {"key": "a"}) == "2"
        assert episode.call("plain", {"x": 7}) == "7"
        assert episode.call("inc", '{"key": "a", "data": {}}') == (
            "an error occured when call inc: inc() got multiple values for keyword argument 'data'"
        )
        assert episode.state() == {"a": 2}
        assert episode.state_hash() == state_digest({"a": 2})


def test_episodes_sharing_a_state_key_are_independent(runtime):
    first = runtime.episode(INC, {"a": 0}, state_key="counters")
    second = runtime.episode(INC, state_key="counters")
    assert first.call_many([("inc", {"key": "a"})] * 3) == ["1", "2", "3"]
    assert second.call("inc", {"key": "a"}) == "1"
    assert first.state() == {"a": 3} and second.state() == {"a": 1}
    batch = runtime.call_batch(
        [(first, "inc", {"key": "a"}), (second, "inc", {"key": "b"}), (first, "plain", {"x": 1})]
    )
    assert batch == ["4", "1", "1"]
    assert runtime.episode(INC, state_key="counters").state() == {"a": 0}
    with pytest.raises(ValueError, match="unknown"):
        runtime.episode(INC, state_key="never-registered")


def test_state_survives_worker_death_by_journal_replay(runtime):
    episode = runtime.episode(INC, {"n": 0})
    assert episode.call_many([("inc", {"key": "n"})] * 3) == ["1", "2", "3"]
    died = episode.call("crash", "{}")
    assert died.startswith("an error occured when call crash: tool worker exited")
    assert episode.call("inc", {"key": "n"}) == "4"  # replayed on a fresh worker; the crashed call left no trace
    assert episode.state() == {"n": 4}
    episode._slot.process.kill()  # killed from outside while idle
    episode._slot.process.wait()
    assert episode.call("inc", {"key": "n"}) == "5"


# ---------------------------------------------------------------------------------------------------- tau-bench


def _load_tau() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    if not (TAU / "tasks_sample.jsonl").exists():
        pytest.skip(f"tau-bench sample data not found at {TAU} (needs ../shared beside the repo)")
    codes, dbs = {}, {}
    for domain, stems in DOMAIN_FILES.items():
        codes[domain] = json.loads((TAU / domain / "codes.json").read_text())
        dbs[domain] = {stem: json.loads((TAU / domain / f"{stem}.json").read_text()) for stem in stems}
    tasks = [json.loads(line) for line in (TAU / "tasks_sample.jsonl").read_text().splitlines() if line.strip()]
    return codes, dbs, tasks


def test_tau_bench_gold_actions_match_reference(runtime):
    codes, dbs, tasks = _load_tau()
    for source in codes.values():
        assert all("data" in code.split("):")[0] for code in source.values()), "tools take the DB as `data`"
    episodes, expected_outputs, expected_hashes, requests = [], [], [], []
    for task in tasks:
        domain = task["data_source"].split("/")[1]
        db = copy.deepcopy(dbs[domain])
        calls = [(a["function"]["name"], a["function"]["arguments"]) for a in task["actions"]]
        expected_outputs.append([reference_call(codes[domain], name, args, data=db) for name, args in calls])
        expected_hashes.append(state_digest(db))
        episode = runtime.episode(codes[domain], dbs[domain], state_key=domain)
        episodes.append(episode)
        requests.append([(episode, name, args) for name, args in calls])
    # half the tasks sequentially through Episode.call, half in one concurrent batch
    half = len(tasks) // 2
    outputs = [[ep.call(name, args) for ep, name, args in calls] for calls in requests[:half]]
    flat = [request for calls in requests[half:] for request in calls]
    batch = iter(runtime.call_batch(flat))
    outputs += [[next(batch) for _ in calls] for calls in requests[half:]]
    assert outputs == expected_outputs
    assert [episode.state_hash() for episode in episodes] == expected_hashes
    assert any(h != state_digest(dbs["airline"]) for h in expected_hashes), "some gold actions mutate the DB"


def test_tau_bench_episodes_do_not_see_each_others_changes(runtime):
    codes, dbs, _ = _load_tau()
    reservation = next(iter(dbs["airline"]["reservations"]))
    first = runtime.episode(codes["airline"], dbs["airline"], state_key="airline")
    second = runtime.episode(codes["airline"], state_key="airline")
    args = json.dumps({"reservation_id": reservation})
    before = second.call("get_reservation_details", args)
    first.call("cancel_reservation", args)
    assert first.call("get_reservation_details", args) != before
    assert second.call("get_reservation_details", args) == before
    assert second.state_hash() == state_digest(dbs["airline"])
