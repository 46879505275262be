"""An async OpenAI-compatible chat client with bounded concurrency, retries and an on-disk response cache.

The cache is what makes an LLM build resumable and reproducible: every reply is stored under a hash of
(model, messages, sampling parameters) before it is used, one file per key written atomically, so a killed
build loses at most the requests in flight and a rerun of the same build sends no request at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

#: HTTP statuses worth retrying: rate limits and server-side failures.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: Statuses that mean the whole build is misconfigured (wrong key, model or URL), not one bad request.
FATAL_STATUSES = frozenset({401, 403, 404})


class LLMUnavailable(RuntimeError):
    """The server stayed unreachable or failing after all retries, or refuses every request; stop the build."""


class RequestRefused(RuntimeError):
    """The server rejected this one request (e.g. HTTP 400: context too long); other requests may still work."""


@dataclass
class ClientConfig:
    """Where and how to send chat requests; `concurrency` bounds requests in flight across the whole build."""

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 300.0
    #: First retry delay; doubles per attempt up to `max_backoff_s` (a longer Retry-After is honoured up to it).
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @property
    def url(self) -> str:
        """The chat-completions endpoint; `base_url` may end in `/v1`, in the endpoint itself, or in neither."""
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


@dataclass
class Completion:
    """One reply: its text, why generation stopped, and whether it came from the cache."""

    text: str
    finish_reason: str | None = None
    cached: bool = False


class ResponseCache:
    """Replies stored as `<dir>/<key[:2]>/<key>.json`, each written to a temp file and renamed into place."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(record, out, ensure_ascii=False)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


@dataclass
class ClientStats:
    """What the client did, for the build summary and for tests."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class ChatClient:
    """Send chat requests to an OpenAI-compatible server; use inside `async with` on one event loop."""

    def __init__(self, config: ClientConfig, cache: ResponseCache | None = None, *, rng: random.Random | None = None):
        self.config = config
        self.cache = cache
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max(1, config.concurrency))
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(config.timeout_s, connect=30.0))

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        """The reply to `messages` with sampling `params` (temperature, max_tokens, seed, ...), cached by all three."""
        request = {"model": self.config.model, "messages": messages, **params}
        key = ResponseCache.key(request)
        if self.cache is not None and (record := self.cache.get(key)) is not None:
            self.stats.cache_hits += 1
            return Completion(record["text"], record.get("finish_reason"), cached=True)
        async with self._semaphore:
            body = await self._post(request)
        completion = _parse_reply(body)
        if self.cache is not None:
            self.cache.put(key, {"request": request, "text": completion.text, "finish_reason": completion.finish_reason})
        return completion

    async def _post(self, request: dict[str, Any]) -> dict[str, Any]:
        problem = ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                response = await self._http.post(self.config.url, json=request)
            except (httpx.TimeoutException, httpx.TransportError) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        problem = "HTTP 200 with a body that is not JSON"
                else:
                    problem = f"HTTP {response.status_code}: {response.text[:300]}"
                    if response.status_code in FATAL_STATUSES:
                        raise LLMUnavailable(f"{self.config.url} refused the request ({problem})")
                    if response.status_code not in RETRY_STATUSES:
                        raise RequestRefused(problem)
                    retry_after = _retry_after(response)
            kind = problem.split(":", 1)[0]
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
            if attempt < self.config.max_retries:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise LLMUnavailable(f"{self.config.url} failed {self.config.max_retries + 1} times; last: {problem}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, capped; a server's Retry-After is honoured up to the cap."""
        delay = min(self.config.max_backoff_s, self.config.backoff_s * 2**attempt) * (0.5 + self._rng.random() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_backoff_s))
        return delay


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _parse_reply(body: dict[str, Any]) -> Completion:
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RequestRefused(f"reply is not a chat completion: {json.dumps(body)[:300]}") from None
    return Completion(str(text), choice.get("finish_reason"))
