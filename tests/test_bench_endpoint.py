"""`ftrl bench toolhop` end to end against a loopback OpenAI-protocol server (stdlib, 127.0.0.1, bounded)."""

from __future__ import annotations

import json
import threading
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
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "birth_year", "arguments": {"name": "Ada Lovelace"}}}]}
        elif "tools" in body:
            message = {"role": "assistant", "content": f"<answer>{messages[-1]['content']}</answer>"}
        else:
            message = {"role": "assistant", "content": "<answer>1816</answer>"}
        payload = json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    FakeServer.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_toolhop_through_an_openai_endpoint(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    data = tmp_path / "toolhop.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    out = tmp_path / "out"
    arguments = ["bench", "toolhop", "--model", "served-model", "--base-url", server, "--data", str(data), "--out", str(out)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output

    requests = FakeServer.requests
    # Direct: 1 request without tools; Mandatory and Free: a call, then the answer
    assert len(requests) == 5
    assert all(r["path"] == "/v1/chat/completions" and r["model"] == "served-model" for r in requests)
    assert all(r["auth"] == "Bearer sk-test" and r["temperature"] == 0.0 for r in requests)
    assert "tools" not in requests[0]
    assert requests[1]["tools"][0]["function"]["name"] == "birth_year"
    # the second request of a tool scenario carries the call (arguments as a JSON string) and the tool result
    assistant, tool = requests[2]["messages"][1:]
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
