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
from ftrl.openai_http import EndpointError, TransportStats, open_client, post_chat
from ftrl.rollout.policy import GenerationStats, Message
from ftrl.settings import SamplingConfig, ServerConfig


@dataclass(kw_only=True)
class EndpointPolicy:
    """Replies from `server`, sampled with `sampling` (its seed is not sent; servers seed themselves)."""

    server: ServerConfig
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stats: GenerationStats = field(default_factory=GenerationStats)
    #: Attempts, retries and failures of every request so far.
    transport: TransportStats = field(default_factory=TransportStats)

    @property
    def url(self) -> str:
        """The chat-completions endpoint (see `ftrl.settings.chat_url`)."""
        return self.server.url

    def generate(self, conversations: list[list[Message]], tools: list[list[dict]] | None = None) -> list[Message]:
        """One reply per conversation (blocking; runs its own event loop)."""
        return asyncio.run(self._generate_all(conversations, tools))

    async def _generate_all(self, conversations: list[list[Message]], tools: list[list[dict]] | None) -> list[Message]:
        limit = asyncio.Semaphore(self.server.concurrency)
        async with open_client(self.server) as client:

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
        sampling = self.sampling
        body: dict[str, Any] = {
            "model": self.server.model,
            "messages": [to_openai(m) for m in messages],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        if tools:
            body["tools"] = tools
        if sampling.enable_thinking:
            body["chat_template_kwargs"] = {"enable_thinking": True}
        return body

    async def _request(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Message:
        return self._reply(await post_chat(client, self.server, body, stats=self.transport))

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
