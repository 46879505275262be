"""`ftrl sample`: states follow the reference collection rules, load back, and survive kill-and-rerun."""

from __future__ import annotations

import json

import pytest

from ftrl.env import read_envs, write_envs
from ftrl.rollout import collect
from test_rollout_support import ScriptedPolicy, call, calls, make_env, say


@pytest.fixture
def envs_file(tmp_path):
    path = tmp_path / "envs.jsonl"
    write_envs(path, [make_env("France"), make_env("Japan")])
    return path


def _scripts():
    france, japan = make_env("France"), make_env("Japan")
    return {
        france.question: [
            calls(
                call("capital_of", country="France"),
                call("unused_tool", x="a", index=1),
            ),
            calls(call("population_of", city="Paris")),
            say("2,100,000"),
        ],
        japan.question: [calls(call("capital_of", country="Spain")), say("no idea")],
    }


def test_states_follow_the_reference_rules(envs_file, tmp_path):
    out = tmp_path / "states.jsonl"
    assert collect("scripted", envs_file, out, policy=ScriptedPolicy(_scripts())) == 5
    states = read_envs(out)
    by_id: dict[str, list] = {}
    for state in states:
        by_id.setdefault(state.extra["episode_id"], []).append(state)
    france, japan = by_id["0-0"], by_id["1-0"]
    raw = make_env("France")
    # state 0 is the raw environment (split train); then one state per tool-calling turn; none for the answer
    assert [s.extra["state"] for s in france] == [0, 1, 2] and [s.extra["state"] for s in japan] == [0, 1]
    assert france[0].messages == raw.messages and france[0].unsolved_set == raw.unsolved_set
    assert france[0].solve_rate == 0.0 and all(s.split == "train" for s in states)
    assert [len(s.messages) for s in france] == [1, 4, 6]
    assert france[1].messages[-1]["role"] == "tool" and france[1].messages[1]["role"] == "assistant"
    assert france[1].unsolved_set == {"capital_of": [], "population_of": ["2,100,000"]} and france[1].solve_rate == 0.5
    # a state with nothing left to solve is kept, as in the reference
    assert france[2].unsolved_set == {"capital_of": [], "population_of": []} and france[2].solve_rate == 1.0
    # a failing call solves nothing; its error message is part of the history
    assert japan[1].solve_rate == 0.0 and japan[1].messages[-1]["content"].startswith(
        "an error occured when call capital_of"
    )
    assert all(s.tools == raw.tools and s.codes == raw.codes and s.answer == raw.answer for s in france)
    assert {s.extra["index"] for s in france} == {0} and "gold_calls" in france[0].extra


def test_solve_rate_counts_the_original_sub_answers_of_a_partial_state(tmp_path):
    env = make_env("France")
    env.unsolved_set = {"capital_of": [], "population_of": ["2,100,000"]}
    env.solve_rate = 0.5
    envs_file = tmp_path / "partial.jsonl"
    write_envs(envs_file, [env])
    script = {env.question: [calls(call("population_of", city="Paris")), say("done")]}
    collect("scripted", envs_file, tmp_path / "s.jsonl", policy=ScriptedPolicy(script))
    states = read_envs(tmp_path / "s.jsonl")
    assert [s.solve_rate for s in states] == [0.5, 1.0]


class Crash(Exception):
    pass


class CrashingPolicy(ScriptedPolicy):
    """Raises on its `crash_at`-th generate call, like a killed process."""

    def __init__(self, scripts, crash_at: int):
        super().__init__(scripts)
        self.crash_at = crash_at

    def generate(self, conversations, tools=None):
        if len(self.batches) + 1 == self.crash_at:
            raise Crash
        return super().generate(conversations, tools)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_kill_and_rerun_loses_and_duplicates_nothing(envs_file, tmp_path):
    reference = tmp_path / "ref.jsonl"
    collect("scripted", envs_file, reference, n_per_env=2, policy=ScriptedPolicy(_scripts()))
    out = tmp_path / "states.jsonl"
    # all four episodes run together: the Japan ones end (and are written) at turn 2, the crash hits turn 3
    with pytest.raises(Crash):
        collect(
            "scripted",
            envs_file,
            out,
            n_per_env=2,
            policy=CrashingPolicy(_scripts(), crash_at=3),
        )
    # simulate a kill in the middle of writing: a partial episode and a torn last line
    with open(out, "a") as handle:
        handle.write(json.dumps({**_rows(reference)[0], "episode_id": "1-1"}) + "\n")
        handle.write('{"messages": [{"role": "us')
    collect("scripted", envs_file, out, n_per_env=2, policy=ScriptedPolicy(_scripts()))

    def key(row: dict) -> tuple:
        return row["episode_id"], row["state"]

    assert sorted(map(key, _rows(out))) == sorted(map(key, _rows(reference)))
    assert len(read_envs(out)) == 10
    # a third run finds everything done and writes nothing
    assert collect("scripted", envs_file, out, n_per_env=2, policy=ScriptedPolicy(_scripts())) == 0


def test_cli_sample_with_the_oracle(envs_file, tmp_path):
    from typer.testing import CliRunner

    from ftrl.cli import app

    out = tmp_path / "oracle_states.jsonl"
    result = CliRunner().invoke(
        app,
        ["sample", "--model", "oracle", "--envs", str(envs_file), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    states = read_envs(out)
    assert [s.solve_rate for s in states] == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
