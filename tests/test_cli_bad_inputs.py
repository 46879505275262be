"""Every command on a table of bad inputs: one clear message naming the file, a non-zero exit, never a traceback.

No model is loaded: a command must reject its input before it loads one (which is also what keeps this fast).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftrl import cli
from ftrl.cli import app

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ftrl" / "test_sample.jsonl"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "width", 400)


def _sample_row() -> dict:
    if not SAMPLE.exists():
        pytest.skip(f"shared sample not found at {SAMPLE}")
    return json.loads(SAMPLE.read_text().splitlines()[0])


def _broken_code_row(code: str = "def broken(:\n    pass\n") -> dict:
    row = _sample_row()
    codes = json.loads(row["codes"])
    codes[next(iter(codes))] = code
    return {**row, "codes": json.dumps(codes)}


BAD_FILES = {
    "binary": lambda: b"\x00\xff\xfe\x80 not text\n",
    "empty": lambda: b"",
    "folder": None,
    "missing": None,
    "not-json": lambda: b"{nope\n",
    "not-an-object": lambda: b"[1, 2]\n",
    "wrong-types": lambda: (json.dumps({**_sample_row(), "messages": 5}) + "\n").encode(),
    "broken-tool-code": lambda: (json.dumps(_broken_code_row()) + "\n").encode(),
    "tool-code-fails-on-load": lambda: (json.dumps(_broken_code_row("import no_such_module_xyz\n")) + "\n").encode(),
    # rows `validate` rejects are rejected the same way by every command that reads them (issue 25)
    "nan-solve-rate": lambda: _raw_row('"solve_rate": NaN'),
    "infinite-solve-rate": lambda: _raw_row('"solve_rate": Infinity'),
    "nan-anywhere": lambda: _raw_row('"score": NaN'),
    "lone-surrogate": lambda: _raw_row('"note": "\\ud800"'),
    "unknown-tool-in-unsolved-set": lambda: _row_with(unsolved_set=json.dumps({"no_such_tool": ["x"]})),
    "string-unsolved-set-value": lambda: _row_with(unsolved_set=json.dumps({_first_tool(): "772"})),
}


def _row_with(**fields: object) -> bytes:
    return (json.dumps({**_sample_row(), **fields}) + "\n").encode()


def _raw_row(field: str) -> bytes:
    """The sample row with one more field spelled as raw JSON text (`NaN`, which json.dumps would not write)."""
    return (json.dumps(_sample_row())[:-1] + ", " + field + "}\n").encode()


def _first_tool() -> str:
    return next(iter(json.loads(_sample_row()["codes"])))


# {f}: the bad file, {o}: a fresh output path
COMMANDS = {
    "validate": ["validate", "{f}"],
    "inspect": ["inspect", "{f}"],
    "stats": ["stats", "{f}"],
    "call": ["call", "{f}", "--tool", "x"],
    "score-states": ["score", "{f}", "--responses", "{responses}", "--out", "{o}.jsonl"],
    "score-responses": ["score", str(SAMPLE), "--responses", "{f}", "--out", "{o}.jsonl"],
    "eval": ["eval", "--model", "oracle", "--envs", "{f}", "--out", "{o}"],
    "sample": ["sample", "--model", "oracle", "--envs", "{f}", "--out", "{o}.jsonl"],
    "export": ["export", "verl", "--data", "{f}", "--out", "{o}"],
    "train": ["train", "--data", "{f}", "--out", "{o}"],
    "sft": ["sft", "--envs", "{f}", "--out", "{o}"],
    "loop": ["loop", "--envs", "{f}", "--eval-envs", "{f}", "--out", "{o}"],
    "bench-toolhop": ["bench", "toolhop", "--model", "gold", "--data", "{f}", "--out", "{o}"],
    "bench-taubench": ["bench", "taubench", "--model", "gold", "--data", "{f}", "--out", "{o}"],
    "bench-rotbench": ["bench", "rotbench", "--model", "gold", "--data", "{f}", "--out", "{o}"],
    "bench-mmlu": ["bench", "mmlu", "--model", "gold", "--data", "{f}", "--out", "{o}"],
    "report": ["report", "{f}", "--out", "{o}"],
    "plot": ["plot", "{f}", "--out", "{o}.png"],
}
# a valid row whose tool code is broken is still fine to look at or to call (the call reports the error), and an
# FTRL row (`messages` + `answer`) is also a RoTBench item in FTRL's own conversion
FINE = {
    ("inspect", "broken-tool-code"),
    ("stats", "broken-tool-code"),
    ("call", "broken-tool-code"),
    ("bench-rotbench", "broken-tool-code"),
    ("inspect", "tool-code-fails-on-load"),
    ("stats", "tool-code-fails-on-load"),
    ("call", "tool-code-fails-on-load"),
    ("bench-rotbench", "tool-code-fails-on-load"),
    # RoTBench reads only `messages` and `answer` of an FTRL row
    ("bench-rotbench", "unknown-tool-in-unsolved-set"),
    ("bench-rotbench", "string-unsolved-set-value"),
}


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jsonl"
    if kind == "folder":
        path.mkdir()
    elif kind != "missing":
        path.write_bytes(BAD_FILES[kind]())
    return path


def _run(tmp_path: Path, command: list[str], bad: Path):
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"row": 0, "response": "hello"}) + "\n")
    out = tmp_path / "out"
    args = [part.format(f=bad, o=out, responses=responses) for part in command]
    began = time.monotonic()
    result = runner.invoke(app, args)
    return result, time.monotonic() - began


@pytest.mark.parametrize("kind", BAD_FILES)
@pytest.mark.parametrize("name", COMMANDS)
def test_bad_input_gives_one_clear_error(tmp_path, name, kind):
    bad = _bad_file(tmp_path, kind)
    result, seconds = _run(tmp_path, COMMANDS[name], bad)
    if (name, kind) in FINE:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return
    assert isinstance(result.exception, SystemExit), (result.exception, result.output)
    assert "Traceback" not in result.output
    assert result.exit_code != 0, result.output
    assert ("error" in result.output or "invalid" in result.output) and bad.name in result.output, result.output
    assert seconds < 20, "rejected only after slow work (a model load?)"


# a bad --config file (content, or None for a missing file or a folder) and what the message must say besides its name
BAD_CONFIGS = {
    "unknown-key": (b"lrate = 0.1\n", "unknown key 'lrate'"),
    "unknown-table": (b"[nope]\nx = 1\n", "unknown key 'nope'"),
    "wrong-type": (b'seed = "zero"\n', "key 'seed': input should be a valid integer"),
    "bool-for-int": (b"seed = true\n", "key 'seed'"),
    "table-for-value": (b"[seed]\nx = 1\n", "key 'seed'"),
    "not-toml": (b"seed = \n", "not valid TOML"),
    "binary": (b"\x00\xff\xfe\x80 not text\n", "not a text file"),
    "missing": (None, "No such file"),
    "folder": (None, "Is a directory"),
}
# {c}: the config file, {o}: a fresh output path; everything else the commands need is valid
CONFIG_COMMANDS = {
    "train": ["train", "--config", "{c}", "--data", str(SAMPLE), "--out", "{o}"],
    "sft": ["sft", "--config", "{c}", "--envs", str(SAMPLE), "--out", "{o}"],
    "loop": ["loop", "--config", "{c}", "--envs", str(SAMPLE), "--eval-envs", str(SAMPLE), "--out", "{o}"],
    "demo": ["demo", "--config", "{c}", "--out", "{o}"],
}


@pytest.mark.parametrize("kind", BAD_CONFIGS)
@pytest.mark.parametrize("name", CONFIG_COMMANDS)
def test_bad_config_file_gives_one_clear_error(tmp_path, monkeypatch, name, kind):
    if not SAMPLE.exists():
        pytest.skip(f"shared sample not found at {SAMPLE}")
    monkeypatch.setattr("ftrl.recipes.demo.run_demo", lambda *args: pytest.fail("the demo ran with a bad config"))
    content, fragment = BAD_CONFIGS[kind]
    bad = tmp_path / f"{kind}.toml"
    if kind == "folder":
        bad.mkdir()
    elif content is not None:
        bad.write_bytes(content)
    began = time.monotonic()
    result = runner.invoke(app, [a.format(c=bad, o=tmp_path / "out") for a in CONFIG_COMMANDS[name]])
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0, (result.exception, result.output)
    assert "Traceback" not in result.output
    assert "error" in result.output and bad.name in result.output and fragment in result.output, result.output
    assert time.monotonic() - began < 20, "rejected only after slow work (a model load?)"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["call", "{sample}", "--tool", "x", "--timeout", "1e9"], "--timeout"),
        (["call", "{sample}", "--tool", "political_event_search", "--args", "[1]"], "JSON object"),
        (["call", "{sample}", "--tool", "political_event_search", "--args", "{{bad"], "not JSON"),
        (["eval", "--model", "oracle", "--envs", "{sample}", "--out", "{o}", "--limit", "0"], "--limit"),
        (["eval", "--model", "m", "--base-url", "htp://nowhere", "--envs", "{sample}", "--out", "{o}"], "base-url"),
        (["build", "--n", "-3", "--out", "{o}.jsonl"], "--n"),
        (["build", "--backend", "nope", "--out", "{o}.jsonl", "--n", "2"], "backend"),
        (["score", "{sample}", "--responses", "{sample}", "--out", "{o}.jsonl", "--reward", "zz"], "--reward"),
        (
            ["eval", "--model", "oracle", "--envs", "{sample}", "--out", "{o}"],
            "rows 0, 1, 2, 3, 4 and 3 more (0-based)",
        ),
    ],
    ids=[
        "huge-timeout",
        "args-not-object",
        "args-not-json",
        "limit-0",
        "malformed-url",
        "negative-n",
        "backend",
        "reward",
        "oracle-without-gold",
    ],
)
def test_bad_options_give_one_clear_error(tmp_path, args, fragment):
    if not SAMPLE.exists():
        pytest.skip(f"shared sample not found at {SAMPLE}")
    result = runner.invoke(app, [a.format(sample=SAMPLE, o=tmp_path / "out") for a in args])
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0, (result.exception, result.output)
    assert "Traceback" not in result.output and fragment in result.output, result.output
