"""The LLM backend of environment construction: the paper's five stages as prompts to a chat model.

`LLMBackend` plugs into the shared build driver (`ftrl build --backend llm ...`); `ChatClient` is the cached,
retrying OpenAI-compatible client it uses. See docs/build-llm.md.
"""

from ftrl.construction.llm.backend import (
    LLMBackend,
    SeedQuestion,
    default_cache_dir,
    make_backend,
    read_seed_questions,
)
from ftrl.construction.llm.client import ChatClient, Completion, LLMUnavailable, RequestRefused, ResponseCache
from ftrl.construction.llm.extract import MalformedOutput, extract_code, extract_json

__all__ = [
    "ChatClient",
    "Completion",
    "LLMBackend",
    "LLMUnavailable",
    "MalformedOutput",
    "RequestRefused",
    "ResponseCache",
    "SeedQuestion",
    "default_cache_dir",
    "make_backend",
    "extract_code",
    "extract_json",
    "read_seed_questions",
]
