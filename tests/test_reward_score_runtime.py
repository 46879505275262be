"""End to end on shared environments with the real `ftrl.runtime.ToolRuntime` executing the rows' tool code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.env.io import read_envs
from ftrl.env.record import Environment
from ftrl.reward import RewardSpec, score_response
from ftrl.runtime import RuntimeConfig, ToolRuntime


@pytest.fixture
def envs(sample_path: Path) -> dict[str, Environment]:
    """The shared environments by gold answer."""
    return {env.answer: env for env in read_envs(sample_path)}


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig()) as tool_runtime:
        yield tool_runtime


def tool_call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def score(env: Environment, text: str, runtime, **spec):
    return score_response(text, env, runtime, RewardSpec(**spec))


def test_gold_producing_call_on_single_hop_row(runtime, envs):
    env = envs["Michel Barnier"]
    # political_event_search returns the sentence naming Michel Barnier only for exactly these arguments
    arguments = {
        "country": "France",
        "event_type": "motion_of_no_confidence",
        "time_period": "1962-2023",
        "figure": "Georges Pompidou",
    }
    result = score(env, tool_call("political_event_search", arguments) + "<|im_end|>", runtime)
    assert result.tool_outputs[0].startswith("Michel Barnier was the first French prime minister")
    assert result.reward == pytest.approx(1.0)  # q=1, p=1: 2*1/(1+1)


def test_parallel_calls_and_a_failing_call_on_parallel_row(runtime, envs):
    env = envs["10"]
    name = "historical_event_info_retriever"
    text = (
        tool_call(name, {"event_name": "explosion at Prüm", "information_type": "casualties"})
        + tool_call(name, {"event_name": "Kemi Bloody Thursday", "information_type": "casualties"})
        + tool_call(name, {"location": "Kemi"})  # missing required event_name -> error text from the runtime
    )
    result = score(env, text, runtime)
    assert result.tool_outputs[:2] == ["12", "2"]  # the code returns the casualties strings as they are
    assert result.tool_outputs[2].startswith(f"an error occured when call {name}")
    assert result.turn.solved == [(name, "12"), (name, "2")]
    assert result.reward == pytest.approx(1.0)  # q=2, p=3: 2*2/(3+1)


def test_echoed_argument_credited_by_reference_but_not_strict(runtime, envs):
    env = envs["Michel Barnier"]
    # any other query falls back to "Searching for ... Involving figure: <figure>." — an echo of the argument
    arguments = {"country": "France", "event_type": "election", "time_period": "2000-2020", "figure": "Michel Barnier"}
    text = tool_call("political_event_search", arguments)
    assert score(env, text, runtime).reward == pytest.approx(1.0)  # reference: q=1, p=1
    assert score(env, text, runtime, matcher="strict").reward == 0.0  # strict: the only mention is the echo
