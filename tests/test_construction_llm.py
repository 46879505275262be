"""The LLM backend end to end against a real loopback HTTP server that replays hand-written model replies.

The server speaks `/v1/chat/completions`; it finds the stage from the prompt's `# Stage: <name>` heading and
picks the first fixture entry (`tests/fixtures/llm_build/<stage>.json`) whose `match` strings all occur in
the first user message (`any`: one of them must; `turn`: only at that many user messages, i.e. repairs).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ftrl.construction.base import STAGE_NAMES, Backend, Rejection, Stage
from ftrl.construction.config import LLM_REQUEST_LIMITS, BuildConfig
from ftrl.construction.driver import build_environments, rejections_path
from ftrl.construction.llm import LLMBackend, LLMUnavailable, make_backend
from ftrl.construction.llm.stages import LLMContext
from ftrl.env import read_envs
from ftrl.env.validate import validate_environment
from ftrl.reward.match import answer_verify
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import ServerConfig

FIXTURES = Path(__file__).parent / "fixtures" / "llm_build"
SEEDS = FIXTURES / "seeds.jsonl"
STAGE = re.compile(r"# Stage: (\w+)")


@dataclass
class FixtureServer:
    """A threaded OpenAI-compatible server on 127.0.0.1 replaying fixture replies; counts every request."""

    #: HTTP statuses to answer the next requests with before replying normally (e.g. [429, 500]).
    failures: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append(body)
            if self.failures:
                return self.failures.pop(0), {"error": {"message": "try again later"}}
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        stage = STAGE.search(users[0]).group(1)
        for entry in json.loads((FIXTURES / f"{stage}.json").read_text(encoding="utf-8")):
            if all(s in users[0] for s in entry["match"]) and (
                not entry.get("any") or any(s in users[0] for s in entry["any"])
            ):
                if entry.get("turn", len(users)) == len(users):
                    message = {"role": "assistant", "content": entry["reply"]}
                    return 200, {
                        "id": "x",
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    }
        self.unmatched.append(users[-1][:300])
        return 400, {"error": {"message": f"no fixture for this {stage} prompt"}}

    def count(self, text: str = "") -> int:
        return sum(1 for body in self.requests if text in json.dumps(body["messages"]))


@pytest.fixture
def server() -> Iterator[tuple[FixtureServer, str]]:
    state = FixtureServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            assert self.path == "/v1/chat/completions"
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            except ValueError:  # a client that cancelled its request mid-send (the build was closed)
                return
            status, payload = state.reply(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def runtime() -> Iterator[ToolRuntime]:
    with ToolRuntime(RuntimeConfig(timeout_s=10, workers=1)) as rt:
        yield rt


def config(base_url: str, cache: Path, *, concurrency: int = 3, retries: int = 5, **overrides: Any) -> BuildConfig:
    """An LLM build against `base_url` whose retries back off for milliseconds only."""
    server = ServerConfig(
        base_url=base_url, model="fixture-model", api_key="k", concurrency=concurrency, retries=retries, backoff_s=0.01
    )
    values: dict[str, Any] = dict(backend="llm", n=10, server=server, seed_questions=str(SEEDS))
    values.update(overrides)
    return BuildConfig(cache_dir=str(cache), **values)


def run_build(build: BuildConfig, out: Path, runtime: ToolRuntime) -> list[dict[str, Any]]:
    """The shared driver; the rejection rows it logged."""
    build_environments(build, out, runtime=runtime)
    return (
        [json.loads(line) for line in rejections_path(out).read_text().splitlines()]
        if rejections_path(out).exists()
        else []
    )


def test_builds_verified_environments_and_rejects_bad_replies(server, runtime, tmp_path):
    state, url = server
    out = tmp_path / "envs.jsonl"
    rejections = run_build(config(url, tmp_path / "cache"), out, runtime)

    assert state.unmatched == []
    envs = read_envs(out)
    assert [env.extra["index"] for env in envs] == [0, 1]
    assert [env.scenario for env in envs] == ["multi_hop", "parallel_single_hop"]
    for env in envs:
        assert validate_environment(env) == []
        distractors = env.extra["distractors"]
        assert distractors and set(distractors) <= set(env.tool_names)
        assert set(env.unsolved_set).isdisjoint(distractors)
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in env.gold_calls]
        with runtime.episode(env.codes) as episode:
            outputs = episode.call_many(calls)
        for sub, output in zip(env.extra["sub_questions"], outputs, strict=True):
            assert answer_verify(output, sub["answer"]), (sub, output)
    # integration merged the two head-count tools into one that owes both answers
    assert envs[1].unsolved_set == {"company_profile_lookup": ["1250", "3400"]}
    assert envs[0].answer == "Port Aldane" and envs[1].answer == "Kestrel Dynamics"

    by_index = {row["index"]: row for row in rejections}
    assert sorted(by_index) == [2, 3, 4, 5]
    assert by_index[2]["stage"] == "decompose" and by_index[2]["reason"].startswith("malformed output: no JSON object")
    assert "(after 2 attempts)" in by_index[2]["reason"]
    assert (
        by_index[3]["stage"] == "decompose"
        and "sub-question 1 'answer' must be a non-empty string" in by_index[3]["reason"]
    )
    assert by_index[4]["stage"] == "deploy" and by_index[4]["reason"].startswith("verification failed: gold call 0")
    assert "does not return sub-answer 'Neve Castellan'" in by_index[4]["reason"]
    assert (
        by_index[5]["stage"] == "deploy"
        and "crashed: an error occured when call aircraft_designer_lookup" in by_index[5]["reason"]
    )
    # the repair turn of seed 1 was asked once, with the reason
    repairs = [
        b
        for b in state.requests
        if len([m for m in b["messages"] if m["role"] == "user"]) == 2 and "Orvane" in json.dumps(b)
    ]
    assert len(repairs) == 1 and "'sub_questions' must be a non-empty list" in repairs[0]["messages"][-1]["content"]


def test_rerun_with_cache_sends_no_request_and_is_identical(server, runtime, tmp_path):
    state, url = server
    build = config(url, tmp_path / "cache")
    run_build(build, tmp_path / "first.jsonl", runtime)
    sent = len(state.requests)
    assert sent > 0
    run_build(build, tmp_path / "second.jsonl", runtime)
    assert len(state.requests) == sent
    assert (tmp_path / "second.jsonl").read_bytes() == (tmp_path / "first.jsonl").read_bytes()
    assert (
        rejections_path(tmp_path / "second.jsonl").read_bytes()
        == rejections_path(tmp_path / "first.jsonl").read_bytes()
    )


def test_interrupted_build_resumes_from_cache_without_duplicates(server, runtime, tmp_path):
    state, url = server
    out = tmp_path / "envs.jsonl"
    run_build(config(url, tmp_path / "cache", n=1, concurrency=1), out, runtime)
    assert [env.extra["index"] for env in read_envs(out)] == [0]
    first_run = len(state.requests)
    run_build(config(url, tmp_path / "cache", n=2, concurrency=1), out, runtime)
    # item 0 was not asked again; the resumed file equals an uninterrupted build
    assert state.count("Velmora") == sum(1 for body in state.requests[:first_run] if "Velmora" in json.dumps(body))
    whole = tmp_path / "whole.jsonl"
    run_build(config(url, tmp_path / "cache", n=2, concurrency=1), whole, runtime)
    assert out.read_bytes() == whole.read_bytes()
    assert [env.extra["index"] for env in read_envs(out)] == [0, 1]


def test_rate_limits_and_server_errors_are_retried(server, runtime, tmp_path):
    state, url = server
    state.failures = [429, 500, 503]
    build = config(url, tmp_path / "cache", n=1, concurrency=1)
    backend = LLMBackend(build, runtime)
    items = backend.build(build)
    first = next(items)
    items.close()
    assert not isinstance(first, Rejection) and first.extra["index"] == 0
    assert backend.stats.retries == 3 and backend.stats.errors == {"HTTP 429": 1, "HTTP 500": 1, "HTTP 503": 1}
    assert state.failures == []


def test_generated_questions_go_through_the_same_stages(server, runtime, tmp_path):
    state, url = server
    build = config(url, tmp_path / "cache", n=1, seed_questions=None, scenarios=("multi_hop",), concurrency=1)
    backend = LLMBackend(build, runtime)
    items = backend.build(build, start=0)
    env = next(items)
    items.close()
    assert env.question.endswith("In which city was the founder of Velmora Robotics born?")
    assert env.answer == "Port Aldane" and validate_environment(env) == []
    assert state.count("# Stage: generate") == 1


def test_stages_follow_the_shared_protocol(server, runtime, tmp_path):
    _, url = server
    build = config(url, tmp_path / "cache")
    backend = make_backend(build, runtime)
    assert isinstance(backend, LLMBackend) and isinstance(backend, Backend)
    context = LLMContext(client=None)  # type: ignore[arg-type]
    stages = backend.stages(context)
    assert [stage.name for stage in stages] == list(STAGE_NAMES)
    assert all(isinstance(stage, Stage) for stage in stages)
    with pytest.raises(RuntimeError, match="inside an LLMBackend"):
        stages[0].run(backend.draft(0))


def test_backend_stops_when_the_server_stays_down(server, runtime, tmp_path):
    state, url = server
    state.failures = [503] * 5
    build = config(url, tmp_path / "cache", concurrency=1, retries=2)
    with pytest.raises(LLMUnavailable, match="failed 3 times; last: HTTP 503"):
        list(LLMBackend(build, runtime).build(build))
    assert len(state.requests) == 3


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("FTRL_TEST_LLM_BASE_URL"),
    reason="set FTRL_TEST_LLM_BASE_URL to a local OpenAI-compatible server",
)
def test_real_server_builds_an_environment(runtime, tmp_path):
    server = ServerConfig(
        base_url=os.environ["FTRL_TEST_LLM_BASE_URL"],
        model=os.environ.get("FTRL_TEST_LLM_MODEL", "default"),
        api_key=os.environ.get("FTRL_TEST_LLM_API_KEY"),
        concurrency=2,
        **LLM_REQUEST_LIMITS,
    )
    build = BuildConfig(backend="llm", n=1, server=server, seed_questions=str(SEEDS), cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "envs.jsonl"
    report = build_environments(build, out, runtime=runtime)
    assert report.written + report.rejected > 0
    for env in read_envs(out) if out.exists() else []:
        assert validate_environment(env) == []


def test_a_request_the_server_refuses_rejects_only_that_item(server, runtime, tmp_path):
    state, url = server
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"question": "What is unknown to the fixtures?", "answer": "x"}) + "\n")
    build = config(url, tmp_path / "cache", seed_questions=str(seeds))
    [item] = list(LLMBackend(build, runtime).build(build))
    assert isinstance(item, Rejection) and item.stage == "decompose"
    assert item.reason.startswith("request refused: http://127.0.0.1:") and "HTTP 400" in item.reason
    assert len(state.requests) == 1
