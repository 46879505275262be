"""`ftrl score`: the per-turn verifiable reward of raw model responses (from any model or stack) against states.

A responses file is JSONL with `row` (0-based state index) and `response` (the raw model text); every line is
checked before any scoring starts. Each response is scored as `ftrl train` scores a sampled one
(`ftrl.reward.score_response`); a response or tool output that cannot be written as UTF-8 becomes that row's
`error`, so one bad row stays one bad row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ftrl.env.record import Environment
from ftrl.jsonl import DataError, iter_jsonl
from ftrl.reward import RewardSpec, score_response
from ftrl.rollout.engine import unicode_fault
from ftrl.runtime import RuntimeConfig, ToolRuntime


def read_score_requests(path: Path, n_rows: int) -> list[tuple[int, str]]:
    """`(row, response)` pairs from a responses file; a bad line is a `DataError` naming the file, line and field."""
    requests = []
    for line, item in iter_jsonl(path):
        if not isinstance(item.get("response"), str):
            raise DataError(path, line, "response", "missing or not a string")
        row = item.get("row")
        if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < n_rows:
            raise DataError(path, line, "row", f"must be an integer state index in 0..{n_rows - 1}, got {row!r}")
        requests.append((row, item["response"]))
    return requests


def score_responses(
    states: Sequence[Environment],
    requests: Sequence[tuple[int, str]],
    spec: RewardSpec,
    timeout_s: float = 10.0,
    advance: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """One output row per request, in order: the row index with the reward, its branch and the parsed calls, or
    with an `error`; `advance` is called after each (progress)."""
    rows: list[dict[str, Any]] = []
    with ToolRuntime(RuntimeConfig(timeout_s=timeout_s)) as runtime:
        for row, text in requests:
            scored = score_response(text, states[row], runtime, spec)
            result: dict[str, Any] = {"row": row, **scored.to_row()}
            fault = unicode_fault(result, "the response or a tool output")
            rows.append({"row": row, "error": fault} if fault else result)
            advance()
    return rows
