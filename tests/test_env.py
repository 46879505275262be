"""Environment records: reference-format round trips, domains, and validation that names file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrl.env import EnvAppender, from_hf_dataset, read_envs, to_hf_dataset, write_envs
from ftrl.env.domains import load_source
from ftrl.env.validate import validate_environment, validate_path
from ftrl.jsonl import DataError, iter_jsonl


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_jsonl_round_trip_is_byte_exact(sample_path: Path, tmp_path: Path) -> None:
    envs = read_envs(sample_path)
    assert [env.scenario for env in envs].count("multi_hop") == 2
    out = tmp_path / "copy.jsonl"
    write_envs(out, envs)
    assert out.read_bytes() == sample_path.read_bytes()


def test_parquet_round_trip_keeps_json_values(sample_path: Path, tmp_path: Path) -> None:
    envs = read_envs(sample_path)
    envs[0].messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "x", "arguments": "{}"}}],
        }
    )
    write_envs(tmp_path / "envs.parquet", envs)
    back = read_envs(tmp_path / "envs.parquet")
    assert [env.to_row() for env in back] == [env.to_row() for env in envs]


def test_unknown_columns_survive_in_order(sample_path: Path, tmp_path: Path) -> None:
    rows = _lines(sample_path)[:2]
    for number, row in enumerate(rows):
        row["index"] = number
        row["my_note"] = {"nested": [1, "two"]}
    source = _write_lines(tmp_path / "extra.jsonl", rows)
    write_envs(tmp_path / "out.jsonl", read_envs(source))
    assert (tmp_path / "out.jsonl").read_bytes() == source.read_bytes()
    assert list(_lines(tmp_path / "out.jsonl")[0])[-2:] == ["index", "my_note"]


def test_hf_datasets_interop(sample_path: Path) -> None:
    envs = read_envs(sample_path)
    dataset = to_hf_dataset(envs)
    assert dataset.num_rows == 8 and isinstance(dataset[0]["tools"], str)
    assert [env.to_row() for env in from_hf_dataset(dataset)] == [env.to_row() for env in envs]


def test_taubench_domains_load_without_copying_state(taubench_path: Path, tmp_path: Path) -> None:
    source = load_source(taubench_path)
    assert set(source.domains) == {"tau-bench/airline", "tau-bench/retail"}
    assert len(source.envs) == 20
    airline = source.domains["tau-bench/airline"]
    assert set(airline.state) == {"flights", "reservations", "users"}
    env = source.envs[0]
    assert env.domain == "tau-bench/airline" and env.gold_calls and env.extra["instruction"].startswith("Your user")
    kwargs = source.episode_kwargs(env)
    assert kwargs["state"] is airline.state and kwargs["state_key"] == "tau-bench/airline"
    write_envs(tmp_path / "tasks.jsonl", source.envs)
    row_bytes = (tmp_path / "tasks.jsonl").stat().st_size / 20
    assert row_bytes < 100_000  # rows carry tools and code, never the multi-megabyte database
    assert all(report.ok for report in validate_path(taubench_path))


def test_invalid_json_line_is_located(sample_path: Path, tmp_path: Path) -> None:
    lines = sample_path.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + lines[1][:-40] + "\n" + lines[2], encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_envs(bad)
    assert error.value.line == 2 and str(bad) in str(error.value)
    reports = validate_path(bad)
    assert [report.ok for report in reports] == [True, False, True]
    assert reports[1].line == 2


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (lambda r: r.update(tools=r["tools"][:-5]), "tools", "not valid JSON"),
        (lambda r: r.update(unsolved_set="{'a': 1}"), "unsolved_set", "not valid JSON"),
        (lambda r: r.pop("codes"), "codes", "missing required field"),
        (lambda r: r.update(messages=[{"content": "no role"}]), "messages", "role"),
    ],
)
def test_unparsable_fields_are_named(sample_path: Path, tmp_path: Path, mutate, field: str, fragment: str) -> None:
    rows = _lines(sample_path)[:3]
    mutate(rows[2])
    path = _write_lines(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as error:
        read_envs(path)
    assert (error.value.line, error.value.field) == (3, field)
    assert fragment in error.value.message


def _first_tool(env) -> str:
    return env.tool_names[0]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e.codes.pop(_first_tool(e)), "has a schema but no code"),
        (lambda e: e.codes.update(ghost_tool="def ghost_tool():\n    return 1\n"), "has no tool schema"),
        (lambda e: e.codes.update({_first_tool(e): "def broken(:\n"}), "does not compile"),
        (lambda e: e.codes.update({_first_tool(e): "def other_name(x):\n    return x\n"}), "does not define"),
        (lambda e: e.unsolved_set.update(not_a_tool=["x"]), "is not one of the tools"),
        (
            lambda e: e.codes.update({_first_tool(e): f"def {_first_tool(e)}():\n    return 1\n"}),
            "missing from its signature",
        ),
    ],
)
def test_validation_names_the_problem(sample_path: Path, mutate, fragment: str) -> None:
    env = read_envs(sample_path)[3]
    assert validate_environment(env) == []
    mutate(env)
    issues = validate_environment(env)
    assert len(issues) == 1 and fragment in issues[0].message, issues


def test_kwargs_signature_accepts_any_schema_parameter(sample_path: Path) -> None:
    env = read_envs(sample_path)[0]
    name = _first_tool(env)
    env.codes[name] = f"def {name}(**kwargs):\n    return kwargs\n"
    assert validate_environment(env) == []


def test_failed_write_keeps_previous_file(sample_path: Path, tmp_path: Path) -> None:
    envs = read_envs(sample_path)
    out = tmp_path / "envs.jsonl"
    write_envs(out, envs)
    before = out.read_bytes()
    envs[1].extra["unserialisable"] = object()
    with pytest.raises(TypeError):
        write_envs(out, envs)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envs.jsonl"]


def test_appender_repairs_torn_tail_and_keeps_rows(sample_path: Path, tmp_path: Path) -> None:
    envs = read_envs(sample_path)
    out = tmp_path / "built.jsonl"
    with EnvAppender(out) as appender:
        for env in envs[:3]:
            appender.write_env(env)
    with open(out, "a", encoding="utf-8") as handle:  # a crash in the middle of the fourth row
        handle.write(json.dumps(envs[3].to_row())[:100])
    assert len(list(iter_jsonl(out, allow_torn_tail=True))) == 3
    with pytest.raises(DataError):
        list(iter_jsonl(out))
    with EnvAppender(out) as appender:
        appender.write_env(envs[3])
    assert [env.to_row() for env in read_envs(out)] == [env.to_row() for env in envs[:4]]
