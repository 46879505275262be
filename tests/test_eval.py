"""`ftrl eval` and `ftrl report`: the oracle scores 100, summaries follow the paper, runs resume and compare."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.env import write_envs
from ftrl.eval import evaluate, report, summarize
from test_rollout_support import ScriptedPolicy, call, calls, make_env, say


@pytest.fixture
def envs_file(tmp_path):
    path = tmp_path / "envs.jsonl"
    write_envs(
        path,
        [
            make_env("France", "multi_hop"),
            make_env("Japan", "multi_hop"),
            make_env("Japan", "single_hop"),
        ],
    )
    return path


def test_cli_eval_oracle_scores_100(envs_file, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "--model", "oracle", "--envs", str(envs_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["solve_p"], summary["solve_r"], summary["solve_f1"]) == (
        100.0,
        100.0,
        100.0,
    )
    assert summary["mean"]["accuracy"] == 100.0 and summary["mean"]["error_rate"] == 0.0
    assert list(summary["scenarios"]) == ["single_hop", "multi_hop"] and summary["scenarios"]["multi_hop"]["n"] == 2
    assert "| mean | 3 | 100.0 | 100.0 | 100.0 | 100.0 | 0.0 | 3.00 |" in (out / "summary.md").read_text()
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 3


def test_oracle_scores_100_on_procedurally_built_environments(tmp_path):
    from ftrl.construction.config import BuildConfig
    from ftrl.construction.driver import build_environments

    envs = tmp_path / "built.jsonl"
    build_environments(BuildConfig(n=8, seed=3, workers=1), envs)
    summary = evaluate("oracle", envs, tmp_path / "run", workers=1)
    assert summary["solve_f1"] == 100.0 and summary["mean"]["accuracy"] == 100.0
    assert sum(s["n"] for s in summary["scenarios"].values()) == 8


def test_scenario_means_weigh_scenarios_equally(envs_file, tmp_path):
    france, japan = make_env("France"), make_env("Japan")
    scripts = {
        france.question: [
            calls(call("capital_of", country="France")),
            say("unknown"),
        ],  # P 1, R 1/2
        japan.question: [say("14000000")],  # P 1 (no calls), R 0, correct
    }
    summary = evaluate("scripted", envs_file, tmp_path / "run", policy=ScriptedPolicy(scripts))
    multi, single = (
        summary["scenarios"]["multi_hop"],
        summary["scenarios"]["single_hop"],
    )
    assert multi["solve_r"] == pytest.approx(25.0) and single["solve_r"] == 0.0
    assert summary["solve_r"] == pytest.approx(12.5)  # mean over scenarios, not over the 3 episodes
    assert multi["solve_f1"] == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert summary["mean"]["accuracy"] == pytest.approx(200 / 3)


def test_eval_resumes_and_repairs_a_torn_tail(envs_file, tmp_path):
    out = tmp_path / "run"
    evaluate("oracle", envs_file, out, limit=2)
    with open(out / "episodes.jsonl", "a") as handle:
        handle.write('{"episode_id": "2", "messa')
    policy = ScriptedPolicy({make_env("Japan").question: [say("14,000,000")]})
    summary = evaluate("oracle", envs_file, out, policy=policy)
    assert policy.batches == [1]  # only the missing episode ran
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["episode_id"] for r in rows) == ["0", "1", "2"] and summary["mean"]["n"] == 3


def test_report_puts_runs_side_by_side(envs_file, tmp_path):
    evaluate("oracle", envs_file, tmp_path / "trained")
    scripts = {make_env(c).question: [say("no idea")] for c in ("France", "Japan")}
    evaluate("base", envs_file, tmp_path / "base", policy=ScriptedPolicy(scripts))
    rows, differences = report([tmp_path / "base", tmp_path / "trained"], tmp_path / "cmp")
    assert rows[0] == ["scenario", "A P", "A R", "A F1", "B P", "B R", "B F1"]
    # the base model made no call: its precision is undefined (the per-episode score keeps the reference's 1.0)
    assert rows[-1] == ["mean", "n/a", "0.0", "0.0", "100.0", "100.0", "100.0"]
    assert "A = base, B = oracle" in (tmp_path / "cmp" / "report.md").read_text()
    assert (tmp_path / "cmp" / "report.png").stat().st_size > 1000
    assert differences[1][0] == "B - A" and differences[1][1] == "+100.0"  # A = base, B = oracle
    assert "Paired differences" in (tmp_path / "cmp" / "report.md").read_text()
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(tmp_path / "base"),
            str(tmp_path / "trained"),
            "--out",
            str(tmp_path / "c2"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c2" / "report.md").exists() and "B - A" in result.output and "B = oracle" in result.output


def test_summarize_empty_and_unknown_scenarios():
    row = {
        "data_source": "tau/airline",
        "metrics": {"solve_precision": 1.0, "solve_rate": 0.5, "solve_f1": 0.5},
        "correct": False,
        "n_calls": 2,
        "n_errors": 1,
        "turns": 3,
    }
    summary = summarize([row])
    assert list(summary["scenarios"]) == ["airline"] and summary["mean"]["error_rate"] == 50.0
    assert summarize([])["mean"]["n"] == 0


def test_gold_and_its_earlier_name_oracle_replay_the_same(envs_file, tmp_path):
    gold = evaluate("gold", envs_file, tmp_path / "gold")
    oracle = evaluate("oracle", envs_file, tmp_path / "oracle")
    assert gold["mean"] == oracle["mean"] and gold["mean"]["solve_f1"] == 100.0


def test_tables_fit_80_columns_and_say_n_a_for_precision_without_calls(envs_file, tmp_path):
    from rich.console import Console

    from ftrl.eval.summary import LEGEND, table_rows, to_rich

    scripts = {make_env(c).question: [say("no idea")] for c in ("France", "Japan")}
    summary = evaluate("base", envs_file, tmp_path / "base", policy=ScriptedPolicy(scripts))
    assert summary["mean"]["solve_p"] == 100.0 and summary["mean"]["calls"] == 0  # reference score, and the fact
    console = Console(width=80, record=True)
    console.print(to_rich(table_rows(summary), "base on envs", LEGEND))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    assert "n/a" in text and "100.0" not in text
    assert "n/a" in (tmp_path / "base" / "summary.md").read_text()
