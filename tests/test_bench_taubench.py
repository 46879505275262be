"""tau-bench: gold replay through the runtime (DB-hash comparison), the outputs rule, pass^k, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.eval.benchmarks.taubench import (
    STOP,
    GoldAgent,
    ScriptedUser,
    load_taubench,
    outputs_said,
    pass_hat_k,
    run_taubench,
    summarize,
    user_conversation,
)

runtime_module = pytest.importorskip("ftrl.runtime")
FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "tau-bench"


@pytest.fixture(scope="module")
def runtime():
    with runtime_module.ToolRuntime(runtime_module.RuntimeConfig(workers=2)) as tool_runtime:
        yield tool_runtime


@pytest.fixture(scope="module")
def loaded():
    """The shared sample (module scope, so the gold run is shared by several tests)."""
    if not FOLDER.exists():
        pytest.skip(f"shared tau-bench sample not found at {FOLDER}")
    return load_taubench(FOLDER)


@pytest.fixture(scope="module")
def gold_run(loaded, runtime, tmp_path_factory):
    source, tasks = loaded
    out = tmp_path_factory.mktemp("gold")
    summary = run_taubench(source, tasks, GoldAgent.for_task, ScriptedUser(), out, runtime)
    rows = {row["task"]: row for row in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    return summary, rows


def test_gold_replay_passes_every_task_without_required_outputs(loaded, gold_run):
    _, tasks = loaded
    _, rows = gold_run
    no_outputs = [task.index for task in tasks if not task.outputs]
    assert len(no_outputs) == 15
    assert all(rows[index]["reward"] == 1.0 and rows[index]["db_match"] for index in no_outputs)


def test_gold_replay_fails_tasks_with_outputs_only_on_outputs(loaded, gold_run):
    _, tasks = loaded
    summary, rows = gold_run
    with_outputs = [task.index for task in tasks if task.outputs]
    assert with_outputs == [0, 10, 11, 13, 15]
    for index in with_outputs:
        assert rows[index]["db_match"] and rows[index]["reward"] == 0.0
        assert not any(rows[index]["outputs"].values())
    assert summary["failed_outputs"] == with_outputs
    # 7 of 8 airline tasks and 8 of 12 retail tasks have no required outputs
    assert summary["pass_hat_k"]["1"] == pytest.approx(
        {"tau-bench/airline": 87.5, "tau-bench/retail": 800 / 12, "overall": 75.0}
    )


def test_gold_agent_tool_calls_really_change_the_database(gold_run):
    _, rows = gold_run
    # task 2 changes flights and bags; every gold call succeeded (no tool error text)
    tool_outputs = [m["content"] for m in rows[2]["messages"] if m["role"] == "tool"]
    assert len(tool_outputs) == 5 and not any(out.startswith(("Error", "an error occured")) for out in tool_outputs)
    assert rows[6]["ended_by"] == "transfer"
    assert rows[2]["ended_by"] == "user_stop"


class Silent:
    """An agent that never calls a tool: it only chats; records how many conversations each call answered."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def generate(self, conversations, tools=None):
        self.batches.append(len(conversations))
        return [{"role": "assistant", "content": "Anything else?", "tool_calls": None}] * len(conversations)


def test_agent_that_changes_nothing_fails_write_tasks(loaded, runtime, tmp_path):
    source, tasks = loaded
    agent = Silent()
    summary = run_taubench(source, [tasks[1], tasks[2]], agent, ScriptedUser(), tmp_path, runtime)
    assert agent.batches == [2]  # both conversations were answered in one batched call
    rows = {r["task"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert rows[1]["reward"] == 1.0  # task 1 has no gold actions: leaving the database alone is right
    assert rows[2]["reward"] == 0.0 and not rows[2]["db_match"]
    assert summary["pass_hat_k"]["1"]["overall"] == 50.0


def test_extra_tool_calls_in_one_reply_are_dropped(loaded, runtime, tmp_path):
    source, tasks = loaded
    task = tasks[5]  # one read-only gold action
    action = task.actions[0]

    class Double:
        def generate(self, conversations, tools=None):
            done = any(m["role"] == "tool" for m in conversations[0])
            calls = None if done else [action, {**action, "id": "second"}]
            return [{"role": "assistant", "content": "ok", "tool_calls": calls}]

    run_taubench(source, [task], Double(), ScriptedUser(), tmp_path, runtime)
    row = json.loads((tmp_path / "results.jsonl").read_text())
    assert sum(m["role"] == "tool" for m in row["messages"]) == 1
    assert len(row["messages"][2]["tool_calls"]) == 1


def test_outputs_rule_lowercases_and_ignores_commas_in_agent_text_only():
    messages = [
        {"role": "user", "content": "the total is 1786"},
        {"role": "assistant", "content": "Your card will be charged $1,786.", "tool_calls": None},
        {"role": "assistant", "content": "Polyester is nice", "tool_calls": [{"id": "x"}]},
        {"role": "tool", "content": "cotton"},
    ]
    said = outputs_said(["1786", "POLYESTER", "cotton", "1,786"], messages)
    # commas are removed from the reply only, so a required output with a comma never matches (as in tau-bench)
    assert said == {"1786": True, "POLYESTER": False, "cotton": False, "1,786": False}


def test_pass_hat_k_estimator():
    # two tasks, 4 trials: 4/4 and 2/4 successes
    assert pass_hat_k([4, 2], 4, 1) == pytest.approx((1 + 0.5) / 2)
    assert pass_hat_k([4, 2], 4, 2) == pytest.approx((1 + 1 / 6) / 2)  # C(2,2)/C(4,2) = 1/6
    assert pass_hat_k([4, 2], 4, 4) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_hat_k([1], 2, 3)


def test_summary_over_trials_per_domain():
    rows = [
        {"task": 0, "domain": "a", "reward": 1.0, "outputs": {}},
        {"task": 0, "domain": "a", "reward": 0.0, "outputs": {}},
        {"task": 1, "domain": "b", "reward": 1.0, "outputs": {}},
        {"task": 1, "domain": "b", "reward": 1.0, "outputs": {}},
    ]
    summary = summarize(rows, trials=2)
    assert summary["pass_hat_k"]["1"] == {"a": 50.0, "b": 100.0, "overall": 75.0}
    assert summary["pass_hat_k"]["2"] == {"a": 0.0, "b": 100.0, "overall": 50.0}


def test_trials_and_resume(loaded, runtime, tmp_path):
    source, tasks = loaded
    run_taubench(source, tasks[5:6], GoldAgent.for_task, ScriptedUser(), tmp_path, runtime, trials=2)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["5/0", "5/1"]

    class Never:
        def generate(self, conversations, tools=None):
            raise AssertionError("finished trials must not run again")

    summary = run_taubench(source, tasks[5:6], Never(), Never(), tmp_path, runtime, trials=2)
    assert summary["pass_hat_k"]["2"]["overall"] == 100.0
    assert "pass^2 (%)" in (tmp_path / "summary.md").read_text()


def test_scripted_user_states_instruction_then_stops(loaded):
    _, tasks = loaded
    conversation = user_conversation(tasks[0])
    assert ScriptedUser().generate([conversation])[0]["content"] == tasks[0].instruction
    conversation += [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "done"}]
    assert ScriptedUser().generate([conversation])[0]["content"] == STOP


def test_a_turn_budget_below_the_protocol_is_applied_and_recorded(loaded, tmp_path):
    from ftrl.eval.benchmarks import BenchConfig, run_benchmark

    _, tasks = loaded
    first = next(task for task in tasks if len(task.actions) >= 2 and not task.outputs)
    options = BenchConfig(model="gold", out=str(tmp_path), data=str(FOLDER), limit=first.index + 1, max_turns=1)
    summary = run_benchmark("taubench", options)
    rows = {row["task"]: row for row in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert summary["max_turns"] == 1
    # the gold agent needs one reply per action: one reply is not enough, so the conversation is cut and fails
    assert rows[first.index]["ended_by"] == "max_turns" and rows[first.index]["reward"] == 0.0
    assert rows[first.index]["turns"] == 1


# ---------------------------------------------------------------------------------------------------- data shapes


def test_a_copy_in_any_folder_and_a_tasks_file_load_alike(loaded, tmp_path):
    import shutil

    copy = tmp_path / "my-copy"  # not named tau-bench: domains are found by each task's data_source
    shutil.copytree(FOLDER, copy)
    for path in (copy, copy / "tasks_sample.jsonl"):
        source, tasks = load_taubench(path)
        assert [t.instruction for t in tasks] == [t.instruction for t in loaded[1]]
        assert {t.env.data_source for t in tasks} == {"tau-bench/airline", "tau-bench/retail"}
        assert {t.domain for t in tasks} <= set(source.domains)


def test_other_shapes_are_refused_with_what_a_tau_bench_folder_needs(tmp_path):
    from ftrl.jsonl import DataError

    alone = tmp_path / "tasks.jsonl"
    alone.write_text((FOLDER / "tasks_sample.jsonl").read_text() if FOLDER.exists() else "{}\n")
    with pytest.raises(DataError, match="needs its domain folders"):
        load_taubench(alone)
    with pytest.raises(DataError, match="not a tau-bench folder"):
        load_taubench(tmp_path)
    if not FOLDER.exists():
        pytest.skip("shared tau-bench sample not found")
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(FOLDER, copy)
    (copy / "tasks_sample.jsonl").write_text('{"instruction": "x", "actions": [], "data_source": "tau-bench/bank"}\n')
    with pytest.raises(DataError, match=r"tasks_sample.jsonl:1: field 'data_source': names unknown domain"):
        load_taubench(copy / "tasks_sample.jsonl")
    (copy / "tasks_sample.jsonl").write_text('{"messages": [], "tools": "[]"}\n')
    with pytest.raises(DataError, match="field 'instruction': missing required task field"):
        load_taubench(copy)
