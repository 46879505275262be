"""The shared OpenAI-compatible transport against scripted replies (httpx.MockTransport, no sockets)."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

from ftrl.openai_http import (
    EndpointError,
    LLMUnavailable,
    RequestRefused,
    TransportStats,
    backoff_delay,
    open_client,
    post_chat,
    post_json,
)
from ftrl.settings import ServerConfig

URL = "http://h:1/v1/chat/completions"


def _post(replies: list[httpx.Response], stats: TransportStats, *, retries: int = 3) -> dict:
    """`post_json` against a server answering `replies` in order; `stats` gets its counters."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == URL and request.headers["authorization"] == "Bearer k"
        return replies.pop(0)

    async def go() -> dict:
        headers = {"Authorization": "Bearer k"}
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), headers=headers) as client:
            return await post_json(client, URL, {"model": "m"}, retries=retries, backoff_s=0.0, stats=stats)

    return asyncio.run(go())


def test_retries_a_busy_server_then_returns_the_reply():
    stats = TransportStats()
    replies = [httpx.Response(503, text="busy"), httpx.Response(429), httpx.Response(200, json={"ok": 1})]
    assert _post(replies, stats) == {"ok": 1}
    assert (stats.requests, stats.retries, stats.errors) == (3, 2, {"HTTP 503": 1, "HTTP 429": 1})


def test_fatal_status_stops_at_once_and_other_refusals_are_per_request():
    stats = TransportStats()
    with pytest.raises(LLMUnavailable, match=r"refused the request \(HTTP 401: bad key"):
        _post([httpx.Response(401, text="bad key"), httpx.Response(200, json={})], stats)
    assert (stats.requests, stats.retries) == (1, 0)
    with pytest.raises(RequestRefused, match="^http://h:1/v1/chat/completions: HTTP 400: too long"):
        _post([httpx.Response(400, text="too long"), httpx.Response(200, json={})], stats)
    assert issubclass(LLMUnavailable, EndpointError) and issubclass(RequestRefused, EndpointError)


def test_gives_up_after_the_last_retry():
    stats = TransportStats()
    with pytest.raises(LLMUnavailable, match="failed 3 times; last: HTTP 500"):
        _post([httpx.Response(500)] * 3, stats, retries=2)
    assert stats.errors == {"HTTP 500": 3}


def test_retry_after_is_honoured_up_to_the_cap():
    start = time.monotonic()
    reply = _post([httpx.Response(429, headers={"Retry-After": "0.3"}), httpx.Response(200, json={})], TransportStats())
    assert reply == {} and time.monotonic() - start >= 0.3
    rng = random.Random(0)
    assert backoff_delay(0, 5.0, backoff_s=0.1, max_backoff_s=60.0, rng=rng) == 5.0
    assert backoff_delay(0, 500.0, backoff_s=0.1, max_backoff_s=60.0, rng=rng) == 60.0
    # without Retry-After: doubling per attempt, jittered to 50-100%, capped
    assert all(4.0 <= backoff_delay(3, None, 1.0, 60.0, rng) <= 8.0 for _ in range(50))
    assert all(backoff_delay(10, None, 1.0, 60.0, rng) <= 60.0 for _ in range(50))


def test_a_client_for_a_server_sends_its_key_and_keeps_its_limits(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    server = ServerConfig(base_url="http://h:1/v1", model="m", timeout_s=50.0, retries=1, backoff_s=0.0)

    async def go() -> None:
        async with open_client(server) as client:
            assert client.headers["authorization"] == "Bearer from-env"
            assert (client.timeout.read, client.timeout.connect) == (50.0, 30.0)
        async with open_client(ServerConfig(base_url="u", model="m", api_key="flag")) as client:
            assert client.headers["authorization"] == "Bearer flag"
        replies = [httpx.Response(503), httpx.Response(503), httpx.Response(200, json={})]
        stats = TransportStats()
        transport = httpx.MockTransport(lambda request: replies.pop(0))
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(LLMUnavailable, match="failed 2 times"):  # the server's one retry, then no more
                await post_chat(client, server, {"model": "m"}, stats=stats)
        assert (stats.requests, stats.retries) == (2, 1)

    asyncio.run(go())
    monkeypatch.delenv("OPENAI_API_KEY")

    async def keyless() -> None:
        async with open_client(ServerConfig(base_url="u", model="m")) as client:
            assert "authorization" not in client.headers

    asyncio.run(keyless())


# ---------------------------------------------------------------------------------------------------- real sockets


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions"
    listener.close()


def _post_real(url: str, **options) -> dict:
    async def go() -> dict:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
            return await post_json(client, url, {"model": "m"}, backoff_s=0.05, **options)

    return asyncio.run(go())


def test_a_server_that_never_answers_fails_within_the_total_timeout(silent_server):
    began = time.monotonic()
    with pytest.raises(LLMUnavailable, match="no reply within 1.5 s"):
        _post_real(silent_server, retries=5, total_timeout_s=1.5)
    assert time.monotonic() - began < 3.0


def test_client_errors_and_malformed_urls_are_not_retried():
    import http.server
    import threading

    hits = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            hits.append(1)
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b"bad request")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RequestRefused, match="HTTP 400"):
            _post_real(f"http://127.0.0.1:{server.server_port}/v1/chat/completions", retries=5)
        assert hits == [1]
    finally:
        server.shutdown()
    for url in ("htp://127.0.0.1:1/v1", "http://[::1/v1"):
        began = time.monotonic()
        with pytest.raises(LLMUnavailable, match="cannot send to"):
            _post_real(url, retries=5)
        assert time.monotonic() - began < 1.0
