"""The shared settings (`ftrl.settings`): one server config and one sampling config, built the same way from the
flags of every command, the API key read from one place, and every config constructed by keyword."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.construction.driver import BuildReport
from ftrl.eval.benchmarks import BenchConfig
from ftrl.rollout import PolicySpec, RolloutConfig
from ftrl.settings import API_KEY_ENV, SamplingConfig, ServerConfig, chat_url

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ftrl"
URL = "http://h:1/v1/chat/completions"


@pytest.mark.parametrize("base", ["http://h:1/v1", "http://h:1/v1/", "http://h:1", "http://h:1/", URL, URL + "/"])
def test_chat_url(base):
    assert chat_url(base) == URL
    assert ServerConfig(base_url=base, model="m").url == URL


def test_api_key_comes_from_the_flag_else_the_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert API_KEY_ENV == "OPENAI_API_KEY"
    assert ServerConfig(base_url="u", model="m").resolve_api_key() == "from-env"
    assert ServerConfig(base_url="u", model="m", api_key="from-flag").resolve_api_key() == "from-flag"
    monkeypatch.setenv(API_KEY_ENV, "")
    assert ServerConfig(base_url="u", model="m").resolve_api_key() is None
    monkeypatch.delenv(API_KEY_ENV)
    monkeypatch.setenv("FTRL_API_KEY", "old-name")  # no longer read
    assert ServerConfig(base_url="u", model="m").resolve_api_key() is None


def test_the_key_stays_out_of_the_repr():
    assert "secret" not in repr(ServerConfig(base_url="u", model="m", api_key="secret"))


@pytest.mark.parametrize(
    ("config", "arguments"),
    [
        (ServerConfig, ("http://h:1/v1", "m")),
        (SamplingConfig, (0.7,)),
        (PolicySpec, ("embedded",)),
        (RolloutConfig, (3,)),
        (BuildConfig, ("procedural", 10)),
        (Difficulty, (2, 3)),
        (BenchConfig, ("gold", "out")),
    ],
)
def test_configs_refuse_positional_arguments(config, arguments):
    with pytest.raises(TypeError):
        config(*arguments)


def _config_dataclasses() -> list[tuple[str, str, bool]]:
    """`(file, class, kw_only)` of every dataclass in src/ftrl named like a config (`*Config`, `*Options`,
    `PolicySpec`), read from the source so that no heavy module (torch, verl) is imported."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            if not (node.name.endswith(("Config", "Options")) or node.name == "PolicySpec"):
                continue
            for decorator in node.decorator_list:
                call = decorator if isinstance(decorator, ast.Call) else None
                name = call.func if call else decorator
                if isinstance(name, ast.Name) and name.id == "dataclass":
                    keywords = {k.arg: k.value for k in call.keywords} if call else {}
                    kw_only = isinstance(keywords.get("kw_only"), ast.Constant) and keywords["kw_only"].value is True
                    found.append((str(path.relative_to(SOURCE)), node.name, kw_only))
    return found


def test_every_config_dataclass_is_keyword_only():
    configs = _config_dataclasses()
    names = {name for _, name, _ in configs}
    assert {
        "ServerConfig",
        "SamplingConfig",
        "PolicySpec",
        "HFConfig",
        "TrainConfig",
        "BenchConfig",
        "BuildOptions",
        "ServerOptions",
    } <= names
    assert "RuntimeConfig" in names
    positional = [(file, name) for file, name, kw_only in configs if not kw_only]
    assert positional == []


def test_importing_the_policy_protocols_loads_no_implementation():
    """`ftrl.rollout.policy` holds protocols only: the endpoint (httpx) and the local model (torch) stay unloaded,
    and no module of the rollout package imports another in a circle."""
    code = (
        "import sys, ftrl.rollout.policy; "
        "print(sorted(m for m in ('ftrl.rollout.endpoint', 'ftrl.rollout.hf', 'torch', 'httpx') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_spec_refuses_a_server_of_another_model():
    with pytest.raises(ValueError, match="serves 'other'"):
        PolicySpec(model="m", server=ServerConfig(base_url="u", model="other"))


def _capture(monkeypatch, module: str, name: str, result: Any = None) -> dict[str, Any]:
    """Replace `module.name` by a stand-in that records its arguments and returns `result`."""
    import importlib

    seen: dict[str, Any] = {}

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        seen["args"], seen["kwargs"] = args, kwargs
        return result(*args) if callable(result) else result

    monkeypatch.setattr(importlib.import_module(module), name, stand_in)
    return seen


@pytest.mark.parametrize("flag", [None, "from-flag"])
def test_build_and_eval_get_the_same_server_from_the_same_flags(flag, sample_path, tmp_path, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    key_file = tmp_path / "key"
    key_file.write_text(f"{flag}\n")
    server_flags = ["--base-url", "http://127.0.0.1:9/v1", "--model", "served"]
    server_flags += ["--api-key-file", str(key_file)] if flag else []
    runner = CliRunner()

    built = _capture(monkeypatch, "ftrl.construction.driver", "build_environments", BuildReport(out="x", written=1))
    arguments = ["build", "--backend", "llm", "--n", "1", "--out", str(tmp_path / "envs.jsonl"), *server_flags]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    build_server = built["args"][0].server

    evaluated = _capture(monkeypatch, "ftrl.eval", "evaluate")
    arguments = [
        "eval",
        "--envs",
        str(sample_path),
        "--out",
        str(tmp_path / "eval"),
        "--batch-size",
        "8",
        *server_flags,
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    spec = evaluated["args"][0]

    def summary(server: ServerConfig) -> tuple:
        return server.base_url, server.model, server.api_key, server.resolve_api_key(), server.concurrency

    assert (
        summary(build_server)
        == summary(spec.server)
        == ("http://127.0.0.1:9/v1", "served", None, flag or "from-env", 8)
    )
    assert spec.model == "served" and spec.sampling == SamplingConfig()
    # the build's requests are longer (whole tool modules): more patience than a rollout turn
    assert (build_server.retries, build_server.timeout_s, build_server.total_timeout_s) == (5, 300.0, 900.0)
    assert (spec.server.retries, spec.server.timeout_s, spec.server.total_timeout_s) == (4, 120.0, 300.0)


def test_bench_builds_its_servers_from_the_same_flags(tmp_path, monkeypatch):
    def write_summary(name: str, options: BenchConfig) -> dict:
        options.out_dir.mkdir(parents=True, exist_ok=True)
        (options.out_dir / "summary.md").write_text("# done\n")
        return {}

    ran = _capture(monkeypatch, "ftrl.eval.benchmarks", "run_benchmark", write_summary)
    arguments = ["bench", "taubench", "--model", "agent", "--user-model", "user", "--out", str(tmp_path / "bench")]
    arguments += ["--base-url", "http://127.0.0.1:9/v1", "--batch-size", "3", "--max-new-tokens", "64"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    options = ran["args"][1]
    server = options.spec().server
    assert (server.base_url, server.model, server.concurrency) == (
        "http://127.0.0.1:9/v1",
        "agent",
        3,
    )
    assert (options.user_server.base_url, options.user_server.model) == ("http://127.0.0.1:9/v1", "user")
    assert options.spec().sampling == SamplingConfig(max_new_tokens=64)


def _declared_fields() -> dict[str, set[str]]:
    """Field name -> the config dataclasses (`*Config`, `*Options`, `*Spec`, `Placement`) declaring it, from source."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Config", "Options", "Spec", "Placement")):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        found.setdefault(item.target.id, set()).add(node.name)
    return found


def test_shared_settings_are_declared_once_and_nested_where_used():
    """Where to reach a server and where a model runs are one dataclass each that the jobs nest (issue 26), so a
    flag means the same everywhere and its help is written once."""
    declared = _declared_fields()
    assert declared["api_key_file"] == {"ServerOptions", "ServerConfig"}  # options and the client's full config
    assert declared["base_url"] == {"ServerOptions", "ServerConfig"}
    assert declared["dtype"] <= {"Placement", "PolicySpec", "HFConfig"}  # the option, and the specs it fills
    assert "TrainConfig" not in declared["matcher"] and "TrainConfig" not in declared["device"]
