"""The batched rollout engine: reference loop semantics, metrics, batching, and the oracle policy."""

from __future__ import annotations

import pytest

from ftrl.rollout import GoldPolicy, RolloutConfig, run_rollouts
from ftrl.runtime import RuntimeConfig, ToolRuntime
from test_rollout_support import ScriptedPolicy, StreamingScriptedPolicy, call, calls, make_env, say


@pytest.fixture(scope="module")
def runtime():
    with ToolRuntime(RuntimeConfig(workers=1, timeout_s=5.0)) as rt:
        yield rt


def test_episode_follows_the_reference_loop(runtime):
    env = make_env("France")
    script = [
        calls(call("capital_of", country="France")),
        calls(
            call("population_of", city="Paris"),
            call("population_of", city="Atlantis", index=1),
        ),
        say("About 2,100,000 people."),
        calls(call("unused_tool", x="never reached")),
    ]
    policy = ScriptedPolicy({env.question: script})
    [result] = run_rollouts([("e0", env)], policy, runtime)
    roles = [m["role"] for m in result.messages]
    assert roles == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert result.messages[2] == {
        "role": "tool",
        "content": "Paris",
        "tool_call_id": script[0]["tool_calls"][0]["id"],
    }
    assert '"population": "2,100,000"' in result.messages[4]["content"]
    assert result.messages[5]["content"].startswith("an error occured when call population_of:")
    # 3 calls, 2 gold sub-answers, both solved: P = 2/3, R = 1, F1 = 4/5
    assert result.metrics == pytest.approx({"solve_precision": 2 / 3, "solve_rate": 1.0, "solve_f1": 0.8})
    assert (result.turns, result.n_calls, result.n_errors, result.correct) == (
        3,
        3,
        1,
        True,
    )
    assert [(c.turn, c.n_messages, c.unsolved_set) for c in result.state_points] == [
        (1, 3, {"capital_of": [], "population_of": ["2,100,000"]}),
        (2, 6, {"capital_of": [], "population_of": []}),
    ]
    assert env.messages == [env.messages[0]] and len(env.messages) == 1  # the input is never mutated


def test_max_turns_stops_a_looping_policy(runtime):
    env = make_env("Japan")
    policy = ScriptedPolicy({env.question: [calls(call("unused_tool", x=str(i))) for i in range(10)]})
    [result] = run_rollouts([("e", env)], policy, runtime, RolloutConfig(max_turns=3))
    assert result.turns == 3 and result.n_calls == 3
    assert result.metrics == pytest.approx({"solve_precision": 0.0, "solve_rate": 0.0, "solve_f1": 0.0})
    assert not result.correct


def test_no_call_at_all_scores_like_the_reference(runtime):
    env = make_env("Japan")
    [result] = run_rollouts([("e", env)], ScriptedPolicy({env.question: [say("14,000,000")]}), runtime)
    assert result.metrics == {
        "solve_precision": 1.0,
        "solve_rate": 0.0,
        "solve_f1": 0.0,
    }
    assert result.correct and result.turns == 1 and result.state_points == []


def test_episodes_share_batched_calls_and_refill(runtime):
    envs = [make_env("France"), make_env("Japan"), make_env("France", "single_hop")]
    envs[2].messages = [{"role": "user", "content": "Question: capital of France, then stop."}]
    scripts = {
        envs[0].question: [calls(call("capital_of", country="France")), say("done")],
        envs[1].question: [
            calls(call("capital_of", country="Japan")),
            calls(call("population_of", city="Tokyo")),
            say("14000000"),
        ],
        envs[2].question: [say("Paris")],
    }
    policy = ScriptedPolicy(scripts)
    results = list(
        run_rollouts(
            [(str(i), e) for i, e in enumerate(envs)],
            policy,
            runtime,
            RolloutConfig(batch_size=2),
        )
    )
    # turn 1: episodes 0 and 1 together; 0 ends at turn 2 and episode 2 takes its slot at once
    assert policy.batches == [2, 2, 2]
    assert sorted(r.key for r in results) == ["0", "1", "2"]
    by_key = {r.key: r for r in results}
    assert by_key["1"].metrics["solve_rate"] == 1.0 and by_key["1"].correct
    assert by_key["0"].metrics["solve_rate"] == 0.5 and not by_key["0"].correct


def test_oracle_replays_gold_calls_and_scores_100(runtime):
    envs = [make_env("France"), make_env("Japan", "parallel_multi_hop")]
    envs[1].extra["gold_calls"] = [
        [
            call("capital_of", country="Japan"),
            call("population_of", city="Tokyo", index=1),
        ]
    ]
    results = list(run_rollouts([(str(i), e) for i, e in enumerate(envs)], GoldPolicy(envs), runtime))
    for result in results:
        assert result.metrics == {
            "solve_precision": 1.0,
            "solve_rate": 1.0,
            "solve_f1": 1.0,
        }
        assert result.correct and result.n_errors == 0
    assert sorted(r.turns for r in results) == [2, 3]


def test_oracle_tells_rows_with_the_same_question_apart(runtime):
    first, second = make_env("France"), make_env("Japan")
    second.tools = list(second.tools)  # rows read from a file never share their tools lists
    second.messages = [dict(m) for m in first.messages]  # the same question, another row's gold calls
    results = list(run_rollouts([("0", first), ("1", second)], GoldPolicy([first, second]), runtime))
    assert [r.metrics["solve_f1"] for r in sorted(results, key=lambda r: r.key)] == [1.0, 1.0]


def test_oracle_refuses_environments_without_gold(runtime):
    env = make_env(gold=False)
    with pytest.raises(ValueError, match="no gold_calls"):
        list(run_rollouts([("e", env)], GoldPolicy([env]), runtime))


def test_continuous_batching_lets_each_episode_go_on_at_its_own_pace(runtime):
    envs = [make_env("France"), make_env("Japan"), make_env("France", "single_hop")]
    envs[2].messages = [{"role": "user", "content": "Question: capital of France, then stop."}]
    scripts = {
        envs[0].question: [
            calls(call("capital_of", country="France")),
            calls(call("population_of", city="Paris")),
            say("2,100,000"),
        ],
        envs[1].question: [calls(call("capital_of", country="Japan")), say("Tokyo")],
        envs[2].question: [say("Paris")],
    }
    jobs = [(str(i), e) for i, e in enumerate(envs)]
    # episode 0 is fast (1 step a turn), episode 1 slow (5 steps a turn); 2 waits in the queue for a free slot
    steps = {envs[0].question: 1, envs[1].question: 5, envs[2].question: 1}
    policy = StreamingScriptedPolicy(scripts, steps)
    streamed = {r.key: r for r in run_rollouts(jobs, policy, runtime, RolloutConfig(batch_size=2))}
    assert policy.submitted == [(0, "0", 0), (0, "1", 0), (1, "0", 1), (2, "0", 2), (3, "2", 0), (5, "1", 1)]
    assert sorted(policy.released) == ["0", "1", "2"]
    # the same episodes, turn by turn through `generate`, give the same messages and metrics
    synced = {r.key: r for r in run_rollouts(jobs, ScriptedPolicy(scripts), runtime, RolloutConfig(continuous=False))}
    for key, result in synced.items():
        assert streamed[key].messages == result.messages
        assert streamed[key].metrics == result.metrics and streamed[key].turns == result.turns
    assert streamed["0"].metrics["solve_rate"] == 1.0 and streamed["0"].correct
