"""`ftrl view`: the static site's data, read back from the JavaScript files the page loads (the page itself is
tested in a real browser in test_viewer_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.env import write_envs
from ftrl.eval import evaluate
from ftrl.viewer import write_site
from test_rollout_support import ScriptedPolicy, call, calls, make_env, say


def read_js(path: Path) -> tuple[str, Any]:
    """`FTRL.put("key",VALUE);` -> (key, VALUE)."""
    text = path.read_text(encoding="utf-8").strip()
    assert text.startswith("FTRL.put(") and text.endswith(");")
    key, _, value = text[len("FTRL.put(") : -2].partition(",")
    return json.loads(key), json.loads(value)


def make_runs(root: Path) -> Path:
    """Two evaluations over the same three environments: `base` (one failing call, one right answer without
    calls, one silent) and `oracle` (the gold trajectories), with an RL training folder beside them."""
    envs = root / "envs.jsonl"
    write_envs(envs, [make_env("France"), make_env("Japan"), make_env("Japan", "single_hop")])
    scripts = {
        make_env("France").question: [calls(call("capital_of", land="France")), say("no idea")],
        make_env("Japan").question: [say("14,000,000")],
    }
    evaluate("base", envs, root / "base", policy=ScriptedPolicy(scripts))
    evaluate("oracle", envs, root / "oracle")
    train = root / "train"
    train.mkdir()
    metrics = [{"step": s, "reward_mean": 0.1 * s, "reward_std": 0.05, "kl": 0.0, "seconds": 2.0} for s in (1, 2)]
    (train / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    sample = {
        "step": 2,
        "state": 0,
        "data_source": "self/single_hop",
        "messages": [{"role": "user", "content": "What is alpha?"}],
        "unsolved_set": {"lookup": ["ALPHA"]},
        "answer": "ALPHA",
        "trained": True,
        "responses": [{"text": "A", "reward": 1.0, "advantage": 0.7}, {"text": "B", "reward": 0.0, "advantage": -0.7}],
    }
    (train / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    return root


@pytest.fixture
def site(tmp_path: Path) -> Path:
    runs = make_runs(tmp_path / "runs")
    write_site([runs], tmp_path / "site")
    return tmp_path / "site"


def test_site_is_local_files_only(site: Path) -> None:
    html = (site / "index.html").read_text()
    assert '<script src="viewer.js">' in html and '<script src="data/index.js">' in html
    for name in ("index.html", "viewer.js", "viewer.css"):
        text = (site / name).read_text()
        assert "http://" not in text and "https://" not in text and "fetch(" not in text, name


def test_index_has_scores_pairs_and_curves(site: Path) -> None:
    key, index = read_js(site / "data" / "index.js")
    assert key == "index"
    assert [run["name"] for run in index["evals"]] == ["base", "oracle"]  # in the order they were produced
    base = index["evals"][0]
    assert base["mean"]["calls"] == 1 and base["scenarios"]["single_hop"]["calls"] == 0  # n/a for Solve-P there
    (pair,) = index["pairs"]
    assert (pair["a"], pair["b"], pair["consecutive"]) == ("e0", "e1", True)
    assert pair["interval"]["mean"] == pytest.approx(100.0) and pair["improved"] == 3 and pair["regressed"] == 0
    (training,) = index["trainings"]
    assert training["kind"] == "rl" and training["sample_steps"] == [2]
    reward = next(c for c in training["curves"] if c["key"] == "reward_mean")
    assert reward["values"] == [0.1, 0.2] and reward["spread"] == [0.05, 0.05]


def test_episodes_carry_tool_errors_per_turn_rewards_and_gold(site: Path) -> None:
    _, listing = read_js(site / "data" / "e0" / "list.js")
    by_id = {row[0]: row for row in listing}
    assert by_id["0"][6:8] == [1, 1]  # France: one call, one error
    assert by_id["1"][3] is None  # Japan: no call, so no precision (not 1.0)
    assert by_id["1"][5] == 1 and "14,000,000" in by_id["1"][10]  # answered right without tools
    _, page = read_js(site / "data" / "e0" / "p0.js")
    france = next(e for e in page if e["id"] == "0")
    tool = next(m for m in france["messages"] if m["role"] == "tool")
    assert tool["error"] is True
    rewards = [r for r in france["rewards"] if r is not None]
    assert [r["branch"] for r in rewards] == ["tool_calls", "none"] and rewards[0]["reward"] == 0.0
    assert [c["name"] for c in france["gold"]["calls"]] == ["capital_of", "population_of"]
    assert france["gold"]["answer"] == "2,100,000"
    _, oracle_page = read_js(site / "data" / "e1" / "p0.js")
    solved = [r for r in oracle_page[0]["rewards"] if r is not None and r["branch"] == "tool_calls"]
    assert solved and all(r["reward"] > 0 and r["solved"] for r in solved)


def test_diff_rows_are_sorted_by_change(site: Path) -> None:
    _, rows = read_js(site / "data" / "d0_1.js")
    changes = [row[4] for row in rows]
    assert changes == sorted(changes, reverse=True) and all(change > 0 for change in changes)
    _, samples = read_js(site / "data" / "t0" / "s2.js")
    assert samples[0]["responses"][1]["advantage"] == -0.7


def test_episodes_are_paged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ftrl.viewer.site as site_module

    monkeypatch.setattr(site_module, "PAGE_SIZE", 2)
    runs = make_runs(tmp_path / "runs")
    write_site([runs / "base"], tmp_path / "site")
    _, index = read_js(tmp_path / "site" / "data" / "index.js")
    assert index["evals"][0]["pages"] == 2 and index["pairs"] == []
    _, listing = read_js(tmp_path / "site" / "data" / "e0" / "list.js")
    assert [row[11] for row in listing] == [0, 0, 1]
    assert len(read_js(tmp_path / "site" / "data" / "e0" / "p1.js")[1]) == 1


def test_cli_view_and_eval_writes_its_viewer(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "runs")
    result = CliRunner().invoke(app, ["view", str(runs / "base"), str(runs / "oracle"), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    _, index = read_js(tmp_path / "v" / "data" / "index.js")
    assert [run["name"] for run in index["evals"]] == ["base", "oracle"] and len(index["pairs"]) == 1
    write_site([runs / "oracle", runs / "base"], tmp_path / "v-reversed")  # folders given: their order wins
    _, index = read_js(tmp_path / "v-reversed" / "data" / "index.js")
    assert [run["name"] for run in index["evals"]] == ["oracle", "base"]
    assert index["pairs"][0]["interval"]["mean"] == pytest.approx(-100.0)
    out = tmp_path / "eval"
    envs = runs / "envs.jsonl"
    result = CliRunner().invoke(app, ["eval", "--model", "oracle", "--envs", str(envs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "viewer" / "index.html").is_file() and (out / "viewer" / "data" / "e0" / "p0.js").is_file()
    result = CliRunner().invoke(app, ["view", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "v2")])
    assert result.exit_code == 2 and "not a folder" in " ".join(result.output.split())
