"""`ftrl eval`: roll out a model on environments and score it as the paper does.

Writes `OUT/episodes.jsonl` (every message and the metrics of each episode, appended as episodes end, so a
rerun skips finished ones and a torn last line is repaired), then `OUT/summary.json` and `OUT/summary.md`
computed over all episodes in the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ftrl.env.domains import load_source
from ftrl.eval.summary import EPISODES_FILE, LEGEND, summarize, table_rows, to_markdown, to_rich
from ftrl.jsonl import JsonlAppender, iter_jsonl, require_key, write_text_atomic
from ftrl.progress import make_progress
from ftrl.rollout.engine import RolloutConfig, run_rollouts
from ftrl.rollout.load import PolicySpec, load_policy
from ftrl.rollout.policy import Policy
from ftrl.runtime import RuntimeConfig, ToolRuntime


def evaluate(
    model: str | Path | PolicySpec,
    envs: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    max_turns: int = 20,
    workers: int = 0,
    timeout_s: float = 10.0,
    policy: Policy | None = None,
    console: Console | None = None,
    matcher: str = "reference",
) -> dict[str, Any]:
    """Run (or resume) an evaluation and write its summary; returns the summary.

    `model` is a model spec (`embedded`, a folder, `gold`) or a full `PolicySpec` (sampling, endpoint...);
    `matcher` decides Solve-P/R/F1 and answer accuracy (`reference`, the paper's, or `strict`).
    """
    console = console or Console(stderr=True)
    spec = model if isinstance(model, PolicySpec) else PolicySpec(model=str(model))
    source = load_source(envs)
    selected = source.envs[:limit] if limit is not None else source.envs
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    episodes = out / EPISODES_FILE
    done = {
        require_key(episodes, line, row, "episode_id", str, "`ftrl eval`")
        for line, row in (iter_jsonl(episodes, allow_torn_tail=True) if episodes.exists() else [])
    }
    jobs = [(str(index), env) for index, env in enumerate(selected) if str(index) not in done]
    if jobs:
        policy = policy or load_policy(spec, selected)
        runtime_config = RuntimeConfig(timeout_s=timeout_s, workers=workers)
        rollout = RolloutConfig(max_turns=max_turns, batch_size=spec.batch_size, matcher=matcher)
        progress = make_progress(console)
        with (
            ToolRuntime(runtime_config) as runtime,
            progress,
            JsonlAppender(episodes) as writer,
        ):
            for result in run_rollouts(
                jobs,
                policy,
                runtime,
                rollout,
                source.episode_kwargs,
                progress,
                len(jobs),
            ):
                writer.write(result.to_row())
    wanted = {str(index) for index in range(len(selected))}
    rows = [row for _, row in iter_jsonl(episodes, allow_torn_tail=True) if row["episode_id"] in wanted]
    settings = asdict(spec)
    if settings["server"] is not None:
        settings["server"]["api_key"] = None  # a key never goes into a results file
    summary = {
        "model": spec.model,
        "envs": str(envs),
        "settings": {**settings, "max_turns": max_turns, "matcher": matcher},
        **summarize(rows),
    }
    failed = [row for row in rows if row.get("error")]
    summary["episode_errors"] = len(failed)
    for row in failed:
        console.print(f"[yellow]episode {row['episode_id']} (row {row['episode_id']}): {escape(row['error'])}[/]")
    title = f"{spec.model} on {Path(envs).name}"
    table = table_rows(summary)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / "summary.md", to_markdown(table, title, LEGEND))
    console.print(to_rich(table, title, LEGEND))
    return summary
