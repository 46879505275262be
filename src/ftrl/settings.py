"""The two settings every model-facing part of ftrl shares, declared once: how to reach a model server and how to
sample from a model.

The builder's chat client, the rollout endpoint policy, the external benchmarks and local generation all take
these, so a flag means the same thing everywhere and a default is set in one place. Plain data: no HTTP or torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

#: Where a local model runs: auto is CUDA when torch sees one (`ftrl.models.placement`).
Device = Literal["auto", "cpu", "cuda"]
#: Weight and compute dtype of a local model (`ftrl.models.placement`).
Dtype = Literal["auto", "fp32", "bf16", "fp16"]
#: Generation engines of local models (`ftrl.rollout.hf`).
Engine = Literal["auto", "kvgen", "int8", "hf"]


def setting(
    default: Any,
    help: str,
    *,
    verl: str | None = None,
    min: float | None = None,
    max: float | None = None,
    results: bool = True,
) -> Any:
    """A config field with its help text beside it (TRL's `field(metadata={"help": ...})`): the command line shows
    it as the flag's help and checks `min`/`max` (`ftrl.cli_config`). `verl` is the verl 0.9.1 key the field
    restates, if any. `results=False` marks a field that does not change the job's results (a path, a run length,
    a memory knob): the resume check ignores it."""
    extra = {key: value for key, value in (("verl", verl), ("min", min), ("max", max)) if value is not None}
    extra |= {} if results else {"results": False}
    return field(default=default, metadata={"help": help, **extra})


def setting_table(factory: Callable[[], Any], help: str, *, results: bool = True) -> Any:
    """A field that is a config of its own (a `[table]` of `--config`, its flags `--table.field`), with help."""
    return field(default_factory=factory, metadata={"help": help} | ({} if results else {"results": False}))


def redefault(cls: type, name: str, default: Any) -> Any:
    """A subclass's own default for a field of `cls`, keeping its help and metadata: a preset that is a config
    class of its own (`DemoConfig` of `LoopConfig`; TRL's configs change their parents' defaults this way)."""
    metadata = next(item.metadata for item in fields(cls) if item.name == name)
    return field(default=default, metadata=metadata)


def results_identity(config: Any) -> dict[str, Any]:
    """The fields of a config that change its job's results, nested configs as nested dicts: all but those
    declared with `results=False`. What a resume check compares (`ftrl.provenance.claim_output`)."""
    return {
        item.name: results_identity(value) if is_dataclass(value := getattr(config, item.name)) else value
        for item in fields(config)
        if item.metadata.get("results", True)
    }


#: The one environment variable ftrl reads an API key from, the convention of OpenAI-compatible clients.
API_KEY_ENV = "OPENAI_API_KEY"


def chat_url(base_url: str) -> str:
    """The chat-completions endpoint; `base_url` may end in `/v1`, in the endpoint itself, or in neither."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


def read_api_key_file(path: str) -> str:
    """The key in `path`: its first line, stripped (a trailing newline from `echo` is fine)."""
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: cannot read the API key file ({getattr(error, 'strerror', None) or error})"
        ) from None
    if not key:
        raise ValueError(f"{path}: the API key file is empty (the key goes on its first line)")
    return key


@dataclass(kw_only=True)
class ServerConfig:
    """An OpenAI-compatible chat server serving `model`, and how patiently to talk to it.

    `concurrency` bounds requests in flight; a failed attempt is retried up to `retries` times after a jittered
    backoff starting at `backoff_s` and doubling up to `max_backoff_s`; `timeout_s` bounds one attempt and
    `total_timeout_s` one request, retries and waits included. The key is `api_key` (in memory, for library
    callers), else the first line of `api_key_file`, else `$OPENAI_API_KEY` (`resolve_api_key`); it is left out
    of the repr so printed configs do not leak it. The command line takes only the file or the variable: a key
    given as an argument is readable by every process of the host in `/proc/<pid>/cmdline`.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    api_key_file: str | None = None
    concurrency: int = 8
    retries: int = 4
    timeout_s: float = 120.0
    total_timeout_s: float = 300.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    @property
    def url(self) -> str:
        """The chat-completions endpoint (see `chat_url`)."""
        return chat_url(self.base_url)

    def resolve_api_key(self) -> str | None:
        """The key to send: `api_key` when given, else the first line of `api_key_file` (`--api-key-file`), else
        `$OPENAI_API_KEY`, else none.

        The only place ftrl reads a key, at the moment a client opens; an unreadable or empty key file is a
        `ValueError` naming the file.
        """
        if self.api_key:
            return self.api_key
        if self.api_key_file:
            return read_api_key_file(self.api_key_file)
        return os.environ.get(API_KEY_ENV) or None


@dataclass(kw_only=True)
class ServerOptions:
    """A model server as a job's options name it (the `[server]` table of `--config`; flags `--base-url`...): the
    part of `ServerConfig` a user sets, shared by every job that can talk to a server. `config` completes it."""

    base_url: str | None = setting(None, "OpenAI-compatible server (…/v1) serving --model.")
    api_key: str | None = setting(
        None, "Refused on the command line (readable in /proc/<pid>/cmdline); see --api-key-file.", results=False
    )
    api_key_file: str | None = setting(
        None, "File whose first line is the API key for --base-url (default $OPENAI_API_KEY).", results=False
    )
    timeout: float = setting(
        300.0,
        "Seconds one model-server request may take in all, retries included (--base-url only).",
        min=1.0,
        max=86400.0,
        results=False,
    )

    def config(self, model: str | None, **limits: Any) -> ServerConfig | None:
        """The server serving `model` (None without a base URL or a model). `limits` are the job's own
        `ServerConfig` fields (concurrency, retries); one attempt gets at most 120 s of `timeout` unless they say."""
        if not self.base_url or not model:
            return None
        limits = {"timeout_s": min(120.0, self.timeout), "total_timeout_s": self.timeout} | limits
        return ServerConfig(
            base_url=self.base_url, model=model, api_key=self.api_key, api_key_file=self.api_key_file, **limits
        )


@dataclass(kw_only=True)
class Placement:
    """Where and in which dtype a local model runs (`ftrl.models.placement`), for every job that loads one."""

    device: Device = setting("auto", "Local models: auto (CUDA when present), cpu or cuda.")
    dtype: Dtype = setting(
        "auto",
        "Local models' weights: auto (training keeps fp32, since bf16 would round lr-1e-6 updates away; generation "
        "uses bf16 on CUDA, else fp32), fp32, bf16 or fp16.",
    )


@dataclass(kw_only=True)
class SamplingConfig:
    """How to draw a reply: `temperature` 0 is greedy (the paper evaluates greedily); `seed` seeds local sampling
    (servers are not sent it); `enable_thinking` lets reasoning models think (chat templates with the switch)."""

    temperature: float = setting(
        0.0, "Sampling temperature (0 = greedy; the paper evaluates greedily).", min=0.0, max=100.0
    )
    top_p: float = setting(1.0, "Nucleus sampling threshold (1: off).", min=0.0, max=1.0)
    max_new_tokens: int = setting(512, "Tokens per assistant turn.", min=1)
    seed: int = setting(0, "Seed of local sampling (servers are not sent it).")
    enable_thinking: bool = setting(False, "Let reasoning models think (chat templates with the switch).")
