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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrl.openai_http import LLMUnavailable as LLMUnavailable  # re-exported: builds catch it from here
from ftrl.openai_http import RequestRefused, TransportStats, chat_url, open_client, post_json


@dataclass
class ClientConfig:
    """Where and how to send chat requests; `concurrency` bounds requests in flight across the whole build."""

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 300.0  # one attempt
    total_timeout_s: float = 900.0  # one request, retries and waits included
    #: First retry delay; doubles per attempt up to `max_backoff_s` (a longer Retry-After is honoured up to it).
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @property
    def url(self) -> str:
        """The chat-completions endpoint (see `chat_url`)."""
        return chat_url(self.base_url)


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
class ClientStats(TransportStats):
    """What the client did, for the build summary and for tests: the transport's counters plus cache hits."""

    cache_hits: int = 0


class ChatClient:
    """Send chat requests to an OpenAI-compatible server; use inside `async with` on one event loop."""

    def __init__(self, config: ClientConfig, cache: ResponseCache | None = None, *, rng: random.Random | None = None):
        self.config = config
        self.cache = cache
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max(1, config.concurrency))
        self._http = open_client(config.api_key, config.timeout_s)

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
            self.cache.put(
                key, {"request": request, "text": completion.text, "finish_reason": completion.finish_reason}
            )
        return completion

    async def _post(self, request: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        return await post_json(
            self._http,
            config.url,
            request,
            retries=config.max_retries,
            backoff_s=config.backoff_s,
            max_backoff_s=config.max_backoff_s,
            stats=self.stats,
            rng=self._rng,
            total_timeout_s=config.total_timeout_s,
        )


def _parse_reply(body: dict[str, Any]) -> Completion:
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RequestRefused(f"reply is not a chat completion: {json.dumps(body)[:300]}") from None
    return Completion(str(text), choice.get("finish_reason"))
