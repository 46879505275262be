"""A real OpenAI-protocol server on loopback: llama.cpp (`llama-cpp-python[server]`) serving the embedded GGUF.

The endpoint policy, `ftrl eval` and every tool-use benchmark run against it end to end. Slow (the server loads
the model and generates for real) and needs `pip install 'llama-cpp-python[server]'`, which compiles llama.cpp
(`make test-slow` installs it); skipped without it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ftrl.cli import app

pytestmark = pytest.mark.slow

MODEL = "smollm2"
STARTUP_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the server on 127.0.0.1, wait (bounded) until it answers, yield its base URL, stop it."""
    pytest.importorskip("llama_cpp.server", reason="needs pip install 'llama-cpp-python[server]'")
    from ftrl.models import ModelNotFound, embedded_gguf

    try:
        gguf = embedded_gguf()
    except ModelNotFound as error:
        pytest.skip(str(error))
    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "8192",
        "--n_threads",
        "1",
        "--verbose",
        "False",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not ready after {STARTUP_S} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_endpoint_policy_gets_real_replies_and_usage(server: str) -> None:
    from ftrl.rollout.endpoint import EndpointPolicy
    from ftrl.settings import SamplingConfig, ServerConfig

    policy = EndpointPolicy(
        server=ServerConfig(base_url=server, model=MODEL, concurrency=2), sampling=SamplingConfig(max_new_tokens=24)
    )
    conversations = [[{"role": "user", "content": question}] for question in ("What is 2 + 2?", "Name a colour.")]
    replies = policy.generate(conversations)
    assert [reply["role"] for reply in replies] == ["assistant", "assistant"]
    assert all(reply["content"].strip() for reply in replies)
    assert policy.stats.completion_tokens > 0 and policy.stats.prompt_tokens > 0
    assert policy.transport.requests == 2 and not policy.transport.errors


def test_ftrl_eval_through_the_server(server: str, tmp_path: Path) -> None:
    from ftrl.construction.config import BuildConfig
    from ftrl.construction.driver import build_environments
    from ftrl.recipes.demo import DemoConfig

    envs = tmp_path / "test.jsonl"
    build_environments(BuildConfig(n=4, seed=1, split="test", difficulty=DemoConfig().difficulty), envs)
    out = tmp_path / "eval"
    args = [
        "eval",
        "--model",
        MODEL,
        "--base-url",
        server,
        "--envs",
        str(envs),
        "--out",
        str(out),
        "--max-turns",
        "3",
        "--max-new-tokens",
        "64",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean"]["n"] == 4
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["messages"][-1]["role"] in ("assistant", "tool") for row in rows)


@pytest.mark.parametrize(
    ("name", "data", "extra"),
    [
        ("toolhop", "toolhop/sample.jsonl", ["--limit", "1", "--max-turns", "3"]),
        ("rotbench", "rotbench", ["--limit", "1"]),
        ("taubench", "tau-bench", ["--limit", "1", "--max-turns", "2", "--user-model", MODEL]),
    ],
)
def test_benchmarks_through_the_server(server: str, tmp_path: Path, name: str, data: str, extra: list[str]) -> None:
    from conftest import shared_path

    out = tmp_path / name
    args = [
        "bench",
        name,
        "--model",
        MODEL,
        "--base-url",
        server,
        "--data",
        str(shared_path(*data.split("/"))),
        "--out",
        str(out),
        "--max-new-tokens",
        "48",
        *extra,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark"] in (name, "tau-bench")
    rows = (out / "results.jsonl").read_text().splitlines()
    assert rows, "no finished item"
