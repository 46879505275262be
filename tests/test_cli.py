"""The foundation commands end to end through the Typer app: validate, call, score, inspect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftrl import cli
from ftrl.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables wrap at the terminal width; a wide console keeps messages on one line for assertions."""
    monkeypatch.setattr(cli.console, "width", 250)


BARNIER_ARGS = {
    "country": "France",
    "event_type": "motion_of_no_confidence",
    "time_period": "1962-2023",
    "figure": "Georges Pompidou",
}


def _call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def test_validate_reports_rows_and_exit_code(sample_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(sample_path)])
    assert result.exit_code == 0, result.output
    assert "8/8 rows valid" in result.output
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    codes = json.loads(rows[1]["codes"])
    name = next(iter(codes))
    codes[name] = f"def {name}(:\n"
    rows[1]["codes"] = json.dumps(codes)
    rows[2]["unsolved_set"] = json.dumps({"no_such_tool": ["x"]})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "6/8 rows valid" in result.output
    assert "does not compile" in result.output and "no_such_tool" in result.output


def test_validate_warns_about_usable_rows_and_fails_on_them_only_when_strict(sample_path: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    codes = json.loads(rows[0]["codes"])
    name = next(iter(codes))
    codes[name] = f"def {name}():\n    return 1\n"  # its schema names parameters this signature lacks
    rows[0]["codes"] = json.dumps(codes)
    suspect = tmp_path / "suspect.jsonl"
    suspect.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["validate", str(suspect)])
    assert result.exit_code == 0, result.output
    assert "8/8 rows valid, 1 with warnings" in result.output and "warning: field 'codes'" in result.output
    assert runner.invoke(app, ["validate", "--strict", str(suspect)]).exit_code == 1


def test_validate_runs_code_in_the_runtime(sample_path: Path, tmp_path: Path) -> None:
    row = json.loads(sample_path.read_text().splitlines()[0])
    codes = json.loads(row["codes"])
    name = next(iter(codes))
    codes[name] = f"raise RuntimeError('boom at import')\ndef {name}(**kw):\n    return 1\n"
    row["codes"] = json.dumps(codes)
    bad = tmp_path / "import_error.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1 and "boom at import" in result.output
    assert runner.invoke(app, ["validate", "--no-run-code", str(bad)]).exit_code == 0


# tool code that compiles but fails when loaded, one failure per row of the sample: (code, error and line reported)
LOAD_FAILURES = {
    1: ("import nonexistent_module_xyz\ndef {name}(**kw):\n    return 1\n", "No module named 'nonexistent_module_xyz'"),
    3: (
        "x = 1\ny = undefined_name\ndef {name}(**kw):\n    return 1\n",
        "NameError: name 'undefined_name' is not defined",
    ),
    6: ("def {name}(**kw):\n    return 1\nraise ValueError('bad at import')\n", "ValueError: bad at import"),
}
LOAD_FAILURE_LINES = {1: 1, 3: 2, 6: 3}


def _rows_failing_on_load(sample_path: Path, tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """The sample with LOAD_FAILURES' code as the first tool of their rows, and that tool's name per row."""
    rows = [json.loads(line) for line in sample_path.read_text().splitlines()]
    names = {}
    for index, (template, _) in LOAD_FAILURES.items():
        codes = json.loads(rows[index]["codes"])
        names[index] = next(iter(codes))
        codes[names[index]] = template.format(name=names[index])
        rows[index]["codes"] = json.dumps(codes)
    path = tmp_path / "fails_on_load.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path, names


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--model", "oracle", "--envs", "{f}", "--out", "{o}"],
        ["score", "{f}", "--responses", "{responses}", "--out", "{o}"],
        ["export", "verl", "--data", "{f}", "--out", "{o}"],
    ],
    ids=["eval", "score", "export"],
)
def test_runs_refuse_tool_code_that_fails_when_loaded(sample_path: Path, tmp_path: Path, command: list[str]) -> None:
    bad, names = _rows_failing_on_load(sample_path, tmp_path)
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"row": 0, "response": "hi"}) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, [part.format(f=bad, o=out, responses=responses) for part in command])
    assert result.exit_code == 2, result.output
    assert f"{bad}: 3 environment(s) with tool code that cannot run" in result.output
    for index, (_, error) in LOAD_FAILURES.items():
        line = LOAD_FAILURE_LINES[index]
        assert f"row {index}, field 'codes', tool {names[index]!r}: " in result.output, result.output
        assert f"{error} (line {line})" in result.output, result.output
    assert "row 0," not in result.output and not out.exists()  # the good rows are not listed, and nothing ran


def test_validate_reports_load_failures_with_their_line(
    sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.console, "width", 500)  # the table's problems column holds the whole error
    bad, names = _rows_failing_on_load(sample_path, tmp_path)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1 and "5/8 rows valid" in result.output
    for index, (_, error) in LOAD_FAILURES.items():
        assert f"code of {names[index]!r} fails when loaded: " in result.output
        assert f"{error} (line {LOAD_FAILURE_LINES[index]})" in result.output


def test_validate_names_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_call_prints_the_tool_message(sample_path: Path, taubench_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "call",
            str(sample_path),
            "--row",
            "0",
            "--tool",
            "political_event_search",
            "--args",
            json.dumps(BARNIER_ARGS),
        ],
    )
    assert result.exit_code == 0
    assert result.output.startswith("Michel Barnier was the first French prime minister")
    result = runner.invoke(app, ["call", str(sample_path), "--tool", "nope"])  # an unknown tool is the user's error
    assert result.exit_code == 2 and "row 0 has no tool 'nope'; its tools: election_result_analyzer" in result.output
    result = runner.invoke(
        app,
        [
            "call",
            str(taubench_path),
            "--row",
            "0",
            "--tool",
            "get_user_details",
            "--args",
            '{"user_id": "mohamed_silva_9265"}',
        ],
    )
    assert json.loads(result.output)["dob"] == "1960-11-26"
    assert runner.invoke(app, ["call", str(sample_path), "--row", "99", "--tool", "x"]).exit_code == 2


def test_score_writes_rewards_and_parsed_calls(sample_path: Path, tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    items = [
        {"row": 0, "response": _call("political_event_search", BARNIER_ARGS) + "<|im_end|>"},  # q=1,p=1 -> 1.0
        {"row": 0, "response": _call("political_event_search", {**BARNIER_ARGS, "figure": "x"})},  # q=0 -> 0.0
        {"row": 0, "response": ""},  # no call, empty -> -0.5
        {"row": 0, "response": "<tool_call>{broken</tool_call>"},  # no parsed call, tags left -> -0.3
        {"row": 0, "response": "It was Michel Barnier."},  # final answer with t=1 pending -> 1/(1+1)
    ]
    responses.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(app, ["score", str(sample_path), "--responses", str(responses), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["reward"] for row in rows] == [1.0, 0.0, -0.5, -0.3, 0.5]
    assert rows[0]["tool_calls"][0]["function"]["name"] == "political_event_search"
    assert [row["branch"] for row in rows[2:]] == ["empty", "malformed", "answer"]
    # Solve-P of the first response: q/p = 1/1; Solve-R: q = 1
    for kind, expected in (("p", 1.0), ("r", 1.0), ("pr", 1.0)):
        runner.invoke(
            app, ["score", str(sample_path), "--responses", str(responses), "--out", str(out), "--reward", kind]
        )
        assert json.loads(out.read_text().splitlines()[0])["reward"] == expected


def test_score_rejects_bad_responses_without_touching_output(sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    out.write_text("previous results\n")
    responses = tmp_path / "responses.jsonl"
    responses.write_text(
        json.dumps({"row": 0, "response": "hi"}) + "\n" + json.dumps({"row": 42, "response": "x"}) + "\n"
    )
    result = runner.invoke(app, ["score", str(sample_path), "--responses", str(responses), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{responses}:2" in result.output and "'row'" in result.output
    assert out.read_text() == "previous results\n"


def test_inspect_shows_question_and_roles(sample_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(sample_path), "--row", "4"])
    assert result.exit_code == 0
    assert "National Library" in result.output and "distractor" in result.output and "needed" in result.output
