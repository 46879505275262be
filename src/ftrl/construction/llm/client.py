"""An async OpenAI-compatible chat client with bounded concurrency, retries and an on-disk response cache.

The cache is what makes an LLM build resumable and reproducible: every reply is stored under a hash of
(model, messages, sampling parameters) before it is used, one file per key written atomically, so a killed
build loses at most the requests in flight and a rerun of the same build sends no request at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrl.jsonl import atomic_path
from ftrl.openai_http import LLMUnavailable as LLMUnavailable  # re-exported: builds catch it from here
from ftrl.openai_http import RequestRefused, TransportStats, open_client, post_chat
from ftrl.settings import ServerConfig


@dataclass
class Completion:
    """One reply: its text, why generation stopped, and whether it came from the cache."""

    text: str
    finish_reason: str | None = None
    cached: bool = False


class ResponseCache:
    """Replies stored as `<dir>/<key[:2]>/<key>.json`, each written atomically (`ftrl.jsonl.atomic_path`)."""

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
        with atomic_path(self._path(key)) as temporary:
            temporary.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


@dataclass
class ClientStats(TransportStats):
    """What the client did, for the build summary and for tests: the transport's counters plus cache hits."""

    cache_hits: int = 0


class ChatClient:
    """Send chat requests to an OpenAI-compatible server; use inside `async with` on one event loop."""

    def __init__(self, server: ServerConfig, cache: ResponseCache | None = None, *, rng: random.Random | None = None):
        self.server = server
        self.cache = cache
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(max(1, server.concurrency))
        self._http = open_client(server)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        """The reply to `messages` with sampling `params` (temperature, max_tokens, seed, ...), cached by all three."""
        request = {"model": self.server.model, "messages": messages, **params}
        key = ResponseCache.key(request)
        if self.cache is not None and (record := self.cache.get(key)) is not None:
            self.stats.cache_hits += 1
            return Completion(record["text"], record.get("finish_reason"), cached=True)
        async with self._semaphore:
            body = await post_chat(self._http, self.server, request, stats=self.stats, rng=self._rng)
        completion = _parse_reply(body, self.server.url)
        if self.cache is not None:
            self.cache.put(
                key, {"request": request, "text": completion.text, "finish_reason": completion.finish_reason}
            )
        return completion


def _parse_reply(body: dict[str, Any], url: str = "the server") -> Completion:
    """The text of a chat completion; a reply without it names the server and the missing field."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        field = "choices"
    elif not isinstance(choices[0].get("message"), dict):
        field = "choices[0].message"
    elif not isinstance(choices[0]["message"].get("content") or "", str):
        field = "choices[0].message.content"
    else:
        choice = choices[0]
        return Completion(choice["message"].get("content") or "", choice.get("finish_reason"))
    shown = json.dumps(body, ensure_ascii=False)[:200]
    raise RequestRefused(f"{url}: field {field!r} missing or malformed in the reply (not a chat completion): {shown}")
