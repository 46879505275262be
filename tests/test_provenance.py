"""Outputs record what produced them: resuming into another run's output, or a second writer, is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftrl import cli
from ftrl.cli import app
from ftrl.construction.config import BuildConfig
from ftrl.construction.driver import build_environments
from ftrl.jsonl import DataError
from ftrl.provenance import OutputError, claim_output, lock_output

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "width", 400)


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory) -> tuple[Path, Path]:
    """Two small procedural sets (with gold calls, so the oracle can replay them)."""
    folder = tmp_path_factory.mktemp("sets")
    first, second = folder / "a.jsonl", folder / "b.jsonl"
    build_environments(BuildConfig(n=3, seed=1), first)
    build_environments(BuildConfig(n=3, seed=2), second)
    return first, second


def _eval(envs: Path, out: Path, *more: str):
    return runner.invoke(app, ["eval", "--model", "oracle", "--envs", str(envs), "--out", str(out), *more])


def test_eval_refuses_an_output_made_from_other_environments(two_sets, tmp_path):
    first, second = two_sets
    out = tmp_path / "run"
    assert _eval(first, out).exit_code == 0
    assert _eval(first, out).exit_code == 0  # the same run resumes (nothing left to do)
    result = _eval(second, out)
    assert result.exit_code == 2 and "was produced by a different run (envs has other content)" in result.output
    assert json.loads((out / "summary.json").read_text())["envs"] == str(first)  # untouched
    result = _eval(second, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["envs"] == str(second)


def test_changed_settings_are_named(two_sets, tmp_path):
    first, _ = two_sets
    out = tmp_path / "run"
    assert _eval(first, out).exit_code == 0
    result = _eval(first, out, "--max-turns", "3")
    assert result.exit_code == 2 and "max_turns: 20 -> 3" in result.output


def test_foreign_folders_are_neither_resumed_nor_deleted(two_sets, tmp_path):
    first, _ = two_sets
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert "was not written by `ftrl eval`" in _eval(first, out).output
    result = _eval(first, out, "--overwrite")
    assert result.exit_code == 2 and "not deleting it" in result.output
    assert (out / "thesis.tex").read_text() == "precious"


def test_a_second_writer_is_refused(two_sets, tmp_path):
    first, _ = two_sets
    out = tmp_path / "run"
    with lock_output(out, folder=True):  # another process (flock conflicts across open files, as across processes)
        result = _eval(first, out)
    assert result.exit_code == 2 and "being written by another ftrl process" in result.output
    assert _eval(first, out).exit_code == 0  # released: the lock never outlives its holder


def test_sample_refuses_another_runs_states(two_sets, tmp_path):
    first, second = two_sets
    states = tmp_path / "states.jsonl"
    args = ["sample", "--model", "oracle", "--out", str(states)]
    assert runner.invoke(app, [*args, "--envs", str(first)]).exit_code == 0
    result = runner.invoke(app, [*args, "--envs", str(second)])
    assert result.exit_code == 2 and "different run" in result.output


def test_an_output_with_nothing_in_it_takes_the_new_record(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with claim_output(out, "job", {}, {"k": 1}, folder=True):
            raise RuntimeError("failed before writing anything")
    with claim_output(out, "job", {}, {"k": 2}, folder=True):  # nothing to resume, so nothing to refuse
        (out / "result.txt").write_text("2")
    with pytest.raises(OutputError, match="k: 2 -> 3"):
        with claim_output(out, "job", {}, {"k": 3}, folder=True):
            pass


def test_claim_records_inputs_by_content(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    out = tmp_path / "out.jsonl"
    with claim_output(out, "job", {"data": data}, {"k": 1}, folder=False):
        out.write_text("row\n")
    data.write_text("{}\n")  # same bytes, new mtime: still the same input
    with claim_output(out, "job", {"data": data}, {"k": 1}, folder=False):
        pass
    data.write_text('{"x": 1}\n')
    with pytest.raises(OutputError, match="data has other content"):
        with claim_output(out, "job", {"data": data}, {"k": 1}, folder=False):
            pass


# ---------------------------------------------------------------------------------------------------- build


def test_build_refuses_an_out_that_is_not_a_build(tmp_path, sample_path):
    out = tmp_path / "envs.jsonl"
    out.write_bytes(sample_path.read_bytes())  # rows of another origin, no .build.json beside them
    with pytest.raises(ValueError, match=r"envs.jsonl exists but is not a build \(envs.jsonl.build.json missing\)"):
        build_environments(BuildConfig(n=10, seed=1), out)
    report = build_environments(BuildConfig(n=3, seed=1), out, overwrite=True)
    assert report.written == 3 and report.resumed == 0


def test_build_rows_without_index_are_named(tmp_path):
    out = tmp_path / "envs.jsonl"
    config = BuildConfig(n=3, seed=1)
    build_environments(config, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    del rows[1]["index"]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=r"envs.jsonl:2: field 'index'"):
        build_environments(BuildConfig(n=5, seed=1), out)


def test_two_builds_into_one_file_are_refused(tmp_path):
    out = tmp_path / "envs.jsonl"
    with lock_output(out, folder=False):
        result = runner.invoke(app, ["build", "--n", "3", "--out", str(out)])
    assert result.exit_code == 2 and "being written by another ftrl process" in result.output
    assert not out.exists()
