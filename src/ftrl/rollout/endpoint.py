"""Any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp, OpenAI) as a policy.

Tools go out natively (`tools`) and calls come back as `tool_calls`. Requests of one batch run concurrently up
to a limit; retries and errors are those of the shared transport `ftrl.openai_http`.
Messages are normalised by `ftrl.formats.openai` (llama.cpp answers HTTP 500 to `"content": null`).
A fault of one request (refused, too large, malformed: the error names the server and the field) becomes that
conversation's reply error (`REPLY_ERROR`), which ends only its episode; an unreachable server stops the run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from ftrl.formats.openai import from_openai, to_openai
from ftrl.openai_http import EndpointError, RequestRefused, TransportStats, open_client, post_chat
from ftrl.rollout.engine import REPLY_ERROR
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
                    try:
                        return await self._request(
                            client,
                            self.body(conversations[index], tools[index] if tools else None),
                        )
                    except (RequestRefused, MalformedReply, UnicodeEncodeError) as error:
                        return {"role": "assistant", "content": "", REPLY_ERROR: f"model server: {error}"}

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
        """The reply's first message; a reply without one, or with fields of the wrong type, is a `MalformedReply`
        naming the server and the field."""
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MalformedReply(f"{self.url}: field 'choices' is missing or empty in the reply: {str(data)[:200]}")
        raw = choices[0].get("message")
        if not isinstance(raw, dict):
            raise MalformedReply(f"{self.url}: field 'choices[0].message' is missing or not an object")
        if raw.get("content") is not None and not isinstance(raw["content"], str):
            raise MalformedReply(f"{self.url}: field 'choices[0].message.content' is not a string")
        try:
            message = from_openai(raw)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise MalformedReply(
                f"{self.url}: field 'choices[0].message.tool_calls' is malformed ({type(error).__name__}: {error})"
            ) from None
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        self.stats.prompt_tokens += _count(usage.get("prompt_tokens"))
        self.stats.completion_tokens += _count(usage.get("completion_tokens"))
        message["content"] = message["content"] or ""
        return message


class MalformedReply(EndpointError):
    """A reply that is JSON but not a chat completion; it concerns one request."""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
