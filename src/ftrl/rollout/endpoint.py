"""Any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp, OpenAI) as a policy.

Tools go out natively (`tools`) and calls come back as `tool_calls`. Requests of one batch run concurrently up
to a limit; retries and errors are those of the shared transport `ftrl.openai_http`.
Messages are normalised by `ftrl.formats.openai` (llama.cpp answers HTTP 500 to `"content": null`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from ftrl.formats.openai import from_openai, to_openai
from ftrl.openai_http import EndpointError, TransportStats, chat_url, open_client, post_json
from ftrl.rollout.policy import GenerationStats, Message


@dataclass
class EndpointConfig:
    """Server, model and sampling; `concurrency` bounds requests in flight."""

    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    enable_thinking: bool = False
    concurrency: int = 8
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 120.0  # one attempt
    total_timeout_s: float = 300.0  # one request, retries and waits included


@dataclass
class EndpointPolicy:
    config: EndpointConfig
    stats: GenerationStats = field(default_factory=GenerationStats)
    #: Attempts, retries and failures of every request so far.
    transport: TransportStats = field(default_factory=TransportStats)

    @property
    def url(self) -> str:
        """The chat-completions endpoint (see `chat_url`)."""
        return chat_url(self.config.base_url)

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        """One reply per conversation (blocking; runs its own event loop)."""
        return asyncio.run(self._generate_all(conversations, tools))

    async def _generate_all(self, conversations: list[list[Message]], tools: list[list[dict]] | None) -> list[Message]:
        limit = asyncio.Semaphore(self.config.concurrency)
        async with open_client(self.config.api_key, self.config.timeout_s) as client:

            async def one(index: int) -> Message:
                async with limit:
                    return await self._request(
                        client,
                        self.body(conversations[index], tools[index] if tools else None),
                    )

            replies = await asyncio.gather(*(one(i) for i in range(len(conversations))))
        self.stats.calls += 1
        return list(replies)

    def body(self, messages: list[Message], tools: list[dict] | None) -> dict[str, Any]:
        """The request body of one conversation."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [to_openai(m) for m in messages],
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            "max_tokens": self.config.max_tokens,
        }
        if tools:
            body["tools"] = tools
        if self.config.enable_thinking:
            body["chat_template_kwargs"] = {"enable_thinking": True}
        return body

    async def _request(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Message:
        config = self.config
        data = await post_json(
            client,
            self.url,
            body,
            retries=config.retries,
            backoff_s=config.backoff_s,
            stats=self.transport,
            total_timeout_s=config.total_timeout_s,
        )
        return self._reply(data)

    def _reply(self, data: dict[str, Any]) -> Message:
        choices = data.get("choices") or []
        if not choices:
            raise EndpointError(f"{self.url} returned no choices: {str(data)[:300]}")
        usage = data.get("usage") or {}
        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        message = from_openai(choices[0]["message"])
        message["content"] = message["content"] or ""
        return message
