"""Isolated tool runtime ("localized deployment"): LLM-generated tool code runs in warm, hardened subprocesses.

`format_result` and `error_message` are the reference's rules for turning a tool's return value or failure into
tool-message content; `state_digest` is the canonical state hash used by `Episode.state_hash`.
"""

from ftrl.runtime._worker import TOOL_ERROR_PREFIX, error_message, format_result, state_digest
from ftrl.runtime.protocol import ToolEpisode, ToolRunner
from ftrl.runtime.runtime import Episode, RuntimeConfig, ToolRuntime

__all__ = [
    "TOOL_ERROR_PREFIX",
    "Episode",
    "RuntimeConfig",
    "ToolEpisode",
    "ToolRunner",
    "ToolRuntime",
    "error_message",
    "format_result",
    "state_digest",
]
