"""The HTTP transport shared by every ftrl client of an OpenAI-compatible chat-completions server.

The dataset builder (`ftrl.construction.llm`) and the endpoint policy (`ftrl.rollout.endpoint`) both talk to such
servers, each described by one `ftrl.settings.ServerConfig`; they share one retry loop here so that rate limits,
Retry-After, fatal misconfiguration and transient failures are handled the same way, and neither package imports
the other.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ftrl.settings import ServerConfig

#: HTTP statuses worth retrying: rate limits and server-side failures.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: Statuses that mean every request will fail (wrong key, model or URL), not just this one.
FATAL_STATUSES = frozenset({401, 403, 404})


class EndpointError(RuntimeError):
    """The server gave no usable reply; catch this to handle both kinds below."""


class LLMUnavailable(EndpointError):
    """The server stayed unreachable or failing after all retries, or refuses every request; stop the job."""


class RequestRefused(EndpointError):
    """The server rejected this one request (e.g. HTTP 400: context too long), or its reply to it was unusable (too
    large, not JSON, a field missing); other requests may still work."""


#: Bytes a reply may take: `REPLY_BYTES_PER_TOKEN` per requested token (`max_tokens`; JSON escapes, tool-call
#: wrapping, reasoning text) plus `REPLY_SLACK_BYTES`; without `max_tokens`, `DEFAULT_MAX_REPLY_BYTES`. A larger
#: reply is not one the request asked for, and is refused after reading only that much.
REPLY_BYTES_PER_TOKEN = 64
REPLY_SLACK_BYTES = 1 << 20
DEFAULT_MAX_REPLY_BYTES = 64 << 20


def max_reply_bytes(body: dict[str, Any]) -> int:
    """The most bytes a reply to `body` may take (see `REPLY_BYTES_PER_TOKEN`)."""
    tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
        return REPLY_SLACK_BYTES + REPLY_BYTES_PER_TOKEN * tokens
    return DEFAULT_MAX_REPLY_BYTES


@dataclass
class TransportStats:
    """Attempts sent, of which retries, and failed attempts by kind (`HTTP 503`, `ConnectTimeout`, ...)."""

    requests: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def open_client(server: ServerConfig) -> httpx.AsyncClient:
    """An HTTP client for `server`: its API key as a bearer token, `timeout_s` per attempt (connecting gets at most
    30 s of it)."""
    api_key = server.resolve_api_key()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = server.timeout_s
    return httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout, connect=min(30.0, timeout)))


async def post_chat(
    client: httpx.AsyncClient,
    server: ServerConfig,
    body: dict[str, Any],
    *,
    stats: TransportStats | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """`post_json` of a chat request to `server`, with its retries, backoff and total timeout."""
    return await post_json(
        client,
        server.url,
        body,
        retries=server.retries,
        backoff_s=server.backoff_s,
        max_backoff_s=server.max_backoff_s,
        stats=stats,
        rng=rng,
        total_timeout_s=server.total_timeout_s,
    )


def backoff_delay(
    attempt: int, retry_after: float | None, backoff_s: float, max_backoff_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based): doubling, capped, jittered to 50-100% so
    concurrent clients do not retry in lockstep; a server's Retry-After is honoured up to the cap."""
    jitter = 0.5 + (rng.random() if rng else random.random()) / 2
    delay = min(max_backoff_s, backoff_s * 2**attempt) * jitter
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_backoff_s))
    return delay


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    retries: int,
    backoff_s: float,
    max_backoff_s: float = 60.0,
    stats: TransportStats | None = None,
    rng: random.Random | None = None,
    total_timeout_s: float | None = None,
) -> dict[str, Any]:
    """POST `body` to `url` and return the JSON reply, retrying transient failures up to `retries` times.

    `total_timeout_s` bounds the whole request, retries and waits included (each attempt gets what is left of
    it); only what can succeed on a retry is retried: connection failures, timeouts, 5xx and rate limits, not a
    malformed URL or a 4xx. Raises `LLMUnavailable` on a fatal status or URL, when every attempt failed or the
    time is up, `RequestRefused` on any other non-retryable status (only this request is bad) and on a reply that
    is larger than `max_reply_bytes(body)` (read no further) or not a JSON object.
    """
    stats = stats if stats is not None else TransportStats()
    problem = ""
    began = time.monotonic()
    deadline = began + total_timeout_s if total_timeout_s is not None else None
    limit = max_reply_bytes(body)
    for attempt in range(retries + 1):
        if attempt:
            stats.retries += 1
        stats.requests += 1
        retry_after: float | None = None
        try:
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            status, headers, data = await asyncio.wait_for(_bounded_post(client, url, body, limit), left)
        except _TooLarge:
            raise RequestRefused(
                f"{url} sent a reply larger than {limit} bytes (max_tokens {body.get('max_tokens')}); not read further"
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
            raise LLMUnavailable(f"cannot send to {url!r}: {error} (check --base-url)") from None
        except httpx.TransportError as error:  # includes timeouts
            problem = f"{type(error).__name__}: {error}"
        except TimeoutError:
            raise LLMUnavailable(f"{url} gave no reply within {total_timeout_s:g} s ({attempt + 1} attempts)") from None
        else:
            if status == 200:
                try:
                    reply = json.loads(data)
                except (ValueError, UnicodeDecodeError):
                    problem = "HTTP 200 with a body that is not JSON"
                else:
                    if not isinstance(reply, dict):
                        raise RequestRefused(f"{url} replied with a JSON {type(reply).__name__}, not an object")
                    return reply
            else:
                text = data[:300].decode("utf-8", "replace")
                problem = f"HTTP {status}: {text}"
                if status in FATAL_STATUSES:
                    raise LLMUnavailable(f"{url} refused the request ({problem})")
                if status not in RETRY_STATUSES:
                    raise RequestRefused(f"{url}: {problem}")
                retry_after = _retry_after(headers)
        kind = problem.split(":", 1)[0]
        stats.errors[kind] = stats.errors.get(kind, 0) + 1
        if attempt < retries:
            delay = backoff_delay(attempt, retry_after, backoff_s, max_backoff_s, rng)
            if deadline is not None and time.monotonic() + delay >= deadline:
                waited = time.monotonic() - began
                asked = f"; it asked to wait {retry_after:g} s (Retry-After)" if retry_after is not None else ""
                raise LLMUnavailable(
                    f"{url} failed {attempt + 1} times in {waited:.1f} s{asked}; the next retry would end after the "
                    f"{total_timeout_s:g} s limit (--timeout), so ftrl gave up; last: {problem}"
                )
            await asyncio.sleep(delay)
    raise LLMUnavailable(f"{url} failed {retries + 1} times; last: {problem}")


class _TooLarge(Exception):
    pass


async def _bounded_post(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], limit: int
) -> tuple[int, httpx.Headers, bytes]:
    """POST and read the reply's status, headers and at most `limit` bytes of body (`_TooLarge` beyond; an error
    status keeps only its first 4 KiB, which is all a message needs)."""
    async with client.stream("POST", url, json=body) as response:
        keep = limit if response.status_code == 200 else 4096
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > keep:
                if response.status_code == 200:
                    raise _TooLarge
                chunks.append(chunk[: keep - size + len(chunk)])
                break
            chunks.append(chunk)
        return response.status_code, response.headers, b"".join(chunks)


def _retry_after(headers: httpx.Headers) -> float | None:
    """The Retry-After header in seconds; the rarely sent HTTP-date form is ignored (plain backoff applies)."""
    try:
        value = float(headers["retry-after"])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None
