"""`ftrl bench toolhop` end to end against a loopback OpenAI-protocol server (stdlib, 127.0.0.1, bounded)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from ftrl.cli import app

pytest.importorskip("ftrl.runtime")

MAX_REQUESTS = 10
ROW = {
    "id": "ada",
    "question": "In which year was Ada Lovelace born?",
    "answer": "1815",
    "tools": {
        "When was Ada Lovelace born?": {
            "name": "birth_year",
            "description": "Birth year of a person.",
            "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        }
    },
    "functions": ["def birth_year(name):\n    return {'Ada Lovelace': 1815}.get(name, 'unknown')\n"],
}


class FakeServer(BaseHTTPRequestHandler):
    """Answers like a tool-calling model: a call first when tools are offered, then the tool's number."""

    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeServer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if len(FakeServer.requests) > MAX_REQUESTS:
            self.send_error(500, "too many requests")
            return
        messages = body["messages"]
        if "tools" in body and not any(m["role"] == "tool" for m in messages):
            # arguments as a dict (some servers do that); the policy must turn them into a JSON string
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "birth_year", "arguments": {"name": "Ada Lovelace"}},
                    }
                ],
            }
        elif "tools" in body:
            message = {"role": "assistant", "content": f"<answer>{messages[-1]['content']}</answer>"}
        else:
            message = {"role": "assistant", "content": "<answer>1816</answer>"}
        send_json(self, {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    def log_message(self, *args: object) -> None:
        pass


def send_json(handler: BaseHTTPRequestHandler, body: dict) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[str]:
    with serving(FakeServer) as url:
        yield url


def test_toolhop_through_an_openai_endpoint(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data = tmp_path / "toolhop.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    out = tmp_path / "out"
    arguments = [
        "bench",
        "toolhop",
        "--model",
        "served-model",
        "--base-url",
        server,
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output

    requests = FakeServer.requests
    # Direct: 1 request without tools; Mandatory and Free: a call, then the answer
    assert len(requests) == 5
    assert all(r["path"] == "/v1/chat/completions" and r["model"] == "served-model" for r in requests)
    assert all(r["auth"] == "Bearer sk-test" and r["temperature"] == 0.0 for r in requests)
    # the three scenarios play together, so their requests interleave: look them up by content
    with_tools = [r for r in requests if "tools" in r]
    assert len(with_tools) == 4 and all(r["tools"][0]["function"]["name"] == "birth_year" for r in with_tools)
    # the second request of a tool scenario carries the call (arguments as a JSON string) and the tool result
    follow_ups = [r for r in with_tools if len(r["messages"]) == 3]
    assert len(follow_ups) == 2
    assistant, tool = follow_ups[0]["messages"][1:]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"name": "Ada Lovelace"}
    assert assistant["content"] == ""
    assert tool == {"role": "tool", "content": "1815", "tool_call_id": "call_1"}

    summary = json.loads((out / "summary.json").read_text())
    assert summary["scores"] == {"Direct": 0.0, "Mandatory": 100.0, "Free": 100.0}
    assert summary["mean"] == pytest.approx(200 / 3)
    assert "Mandatory" in result.output

    # a rerun finds every item finished and sends nothing
    assert CliRunner().invoke(app, arguments).exit_code == 0
    assert len(FakeServer.requests) == 5


class ScriptedServer(BaseHTTPRequestHandler):
    """An OpenAI-protocol server whose reply text comes from `answer(body)`; it records every request."""

    requests: list[dict] = []
    answer = staticmethod(lambda body: "")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ScriptedServer.requests.append(body)
        if len(ScriptedServer.requests) > 50:
            self.send_error(500, "too many requests")
            return
        message = {"role": "assistant", "content": ScriptedServer.answer(body)}
        send_json(
            self,
            {
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3},
            },
        )

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[str]:
    with serving(ScriptedServer) as url:
        yield url


def test_rotbench_through_an_openai_endpoint(scripted, tmp_path):
    from conftest import shared_path
    from ftrl.eval.benchmarks.rotbench import load_rotbench

    data = shared_path("rotbench")
    gold = {item.messages[-1]["content"]: item.answers[0] for item in load_rotbench(data, limit=1)}
    # the served "model" answers the first acceptable answer for the clean item and nonsense elsewhere
    clean_last = next(text for text, _ in gold.items())
    ScriptedServer.answer = staticmethod(
        lambda body: gold[clean_last] if body["messages"][-1]["content"] == clean_last else "Thought: no idea"
    )
    out = tmp_path / "rot"
    args = [
        "bench",
        "rotbench",
        "--model",
        "served",
        "--base-url",
        scripted,
        "--data",
        str(data),
        "--out",
        str(out),
        "--limit",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(ScriptedServer.requests) == 5  # one item per noise level, one request each
    assert all("tools" not in body for body in ScriptedServer.requests)  # tools live in the system prompt
    summary = json.loads((out / "summary.json").read_text())
    levels = summary["levels"]
    assert levels.pop("clean") == {"TS": 100.0, "PI": 100.0, "CF": 100.0}
    assert len(levels) == 4 and all(scores == {"TS": 0.0, "PI": 0.0, "CF": 0.0} for scores in levels.values())


def test_taubench_agent_and_user_through_an_openai_endpoint(scripted, tmp_path):
    from conftest import shared_path

    def answer(body: dict) -> str:
        system = body["messages"][0]["content"]
        return "Thanks, bye. ###STOP###" if system.startswith("You are a user") else "Sorry, I cannot help with that."

    ScriptedServer.answer = staticmethod(answer)
    out = tmp_path / "tau"
    args = [
        "bench",
        "taubench",
        "--model",
        "agent",
        "--user-model",
        "user",
        "--base-url",
        scripted,
        "--data",
        str(shared_path("tau-bench")),
        "--out",
        str(out),
        "--limit",
        "2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    agent = [body for body in ScriptedServer.requests if body["model"] == "agent"]
    user = [body for body in ScriptedServer.requests if body["model"] == "user"]
    # per task: the user opens, the agent answers once, the user stops
    assert len(agent) == 2 and len(user) == 4
    assert all(body["tools"] and body["messages"][0]["role"] == "system" for body in agent)
    assert all("Instruction:" in body["messages"][0]["content"] and "tools" not in body for body in user)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [row["ended_by"] for row in rows] == ["user_stop", "user_stop"]
    summary = json.loads((out / "summary.json").read_text())
    # an agent that changes nothing passes only tasks whose gold actions change nothing either
    assert all(row["reward"] == float(row["db_match"] and all(row["outputs"].values())) for row in rows)
    assert summary["benchmark"] == "tau-bench"
