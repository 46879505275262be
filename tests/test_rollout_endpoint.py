"""The endpoint policy against a real OpenAI-protocol server on loopback (stdlib http.server in a thread)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ftrl.rollout import RolloutConfig, run_rollouts
from ftrl.rollout.endpoint import EndpointError, EndpointPolicy
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import ServerConfig
from test_rollout_support import make_env


class ScriptedServer(ThreadingHTTPServer):
    """Answers /v1/chat/completions: the gold calls of the environment named by the question, then the answer.

    `fail_first` requests get HTTP 503 first (to exercise retries); every request body is kept.
    """

    def __init__(self, fail_first: int = 0):
        super().__init__(("127.0.0.1", 0), Handler)
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body)
            failing = self.server.fail_first > 0
            self.server.fail_first -= failing
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": "not found"}})
        if failing:
            return self._send(503, {"error": {"message": "busy"}})
        if any(m.get("content") is None for m in body["messages"]):
            return self._send(500, {"error": {"message": "null content"}})  # what llama.cpp does
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        country = "France" if "France" in body["messages"][0]["content"] else "Japan"
        city = {"France": "Paris", "Japan": "Tokyo"}[country]
        script = [
            ("capital_of", {"country": country}),
            ("population_of", {"city": city}),
        ]
        if turn < len(script):
            name, arguments = script[turn]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{turn}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                ],
            }
        else:
            message = {
                "role": "assistant",
                "content": "The population is " + {"Paris": "2,100,000", "Tokyo": "14,000,000"}[city],
            }
        self._send(
            200,
            {
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            },
        )

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    server = ScriptedServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _policy(server: ScriptedServer, **options) -> EndpointPolicy:
    host, port = server.server_address
    server = ServerConfig(base_url=f"http://{host}:{port}/v1", model="scripted", api_key="k", backoff_s=0.01, **options)
    return EndpointPolicy(server=server)


def test_endpoint_policy_solves_episodes_with_native_tool_calls(server):
    envs = [make_env("France"), make_env("Japan")]
    policy = _policy(server, concurrency=2)
    with ToolRuntime(RuntimeConfig(workers=1)) as runtime:
        results = list(
            run_rollouts(
                [(str(i), e) for i, e in enumerate(envs)],
                policy,
                runtime,
                RolloutConfig(),
            )
        )
    assert all(r.metrics["solve_f1"] == 1.0 and r.correct for r in results)
    assert len(server.requests) == 6 and policy.stats.completion_tokens == 30
    first = server.requests[0]
    assert first["model"] == "scripted" and [t["function"]["name"] for t in first["tools"]] == [
        "capital_of",
        "population_of",
        "unused_tool",
    ]
    # the assistant tool-call turns went back with "" instead of null content, and tool results with their ids
    later = server.requests[-1]["messages"]
    assert [m["role"] for m in later] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    assert later[1]["content"] == "" and later[2]["tool_call_id"] == later[1]["tool_calls"][0]["id"]


def test_transient_errors_are_retried(server):
    server.fail_first = 2
    [reply] = _policy(server).generate([make_env().messages], [make_env().tools])
    assert reply["tool_calls"][0]["function"]["name"] == "capital_of"
    assert len(server.requests) == 3


def test_persistent_failure_and_client_errors_raise(server):
    server.fail_first = 10
    with pytest.raises(EndpointError, match="failed 2 times"):
        _policy(server, retries=1).generate([make_env().messages])
    host, port = server.server_address
    wrong = EndpointPolicy(server=ServerConfig(base_url=f"http://{host}:{port}/other", model="m", retries=0))
    with pytest.raises(EndpointError, match="HTTP 404"):
        wrong.generate([make_env().messages])
