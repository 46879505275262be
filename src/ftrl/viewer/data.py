"""What the viewer shows, read from run folders: evaluations, trainings, RL samples, stage times.

A run folder is anything ftrl writes: an `ftrl eval` folder (`summary.json` + `episodes.jsonl`), a training folder
(`metrics.jsonl`, and `samples.jsonl` for RL), or a folder holding several (`ftrl loop`, `ftrl demo`), searched
recursively. Evaluations are in the order of the folders given, and within one folder in the order they were
produced (a pipeline's stages in order).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftrl.env.record import Environment
from ftrl.eval.summary import EPISODES_FILE, scenario_of
from ftrl.jsonl import iter_jsonl
from ftrl.reward.solve import pending_count
from ftrl.reward.turn import turn_reward
from ftrl.runtime import TOOL_ERROR_PREFIX

#: Folders never searched for runs (checkpoints, saved models, tracker files, a site written earlier).
SKIPPED = {"checkpoints", "model", "trackers", "viewer", "node_modules", ".git"}
#: Longest tool output or message kept in the site (the site is for reading, the JSONL keeps everything).
TEXT_CHARS = 4000


@dataclass
class EvalRun:
    name: str
    folder: Path
    summary: dict[str, Any]
    episodes: list[dict[str, Any]]
    envs: list[Environment] | None = None
    envs_note: str = ""


@dataclass
class TrainRun:
    name: str
    folder: Path
    kind: str  # "rl" or "sft"
    metrics: list[dict[str, Any]]
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Runs:
    evals: list[EvalRun] = field(default_factory=list)
    trainings: list[TrainRun] = field(default_factory=list)
    #: stage title -> seconds (a demo's `report/settings.json`), per top folder
    stage_times: dict[str, dict[str, float]] = field(default_factory=dict)


def _folders(root: Path) -> Iterator[Path]:
    yield root
    for child in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIPPED):
        yield from _folders(child)


def _label(root: Path, folder: Path, roots: Sequence[Path]) -> str:
    relative = folder.relative_to(root).as_posix()
    prefix = root.resolve().name if len(roots) > 1 or relative == "." else ""
    return "/".join(part for part in (prefix, "" if relative == "." else relative) if part)


def load_runs(paths: Sequence[str | Path], envs: str | Path | None = None) -> Runs:
    """Every evaluation and training under `paths`; `envs` overrides the environment file of evaluations (else
    each evaluation's `summary.json` names it)."""
    roots = [Path(p) for p in paths]
    runs = Runs()
    found: list[tuple[int, float, EvalRun]] = []
    for position, root in enumerate(roots):
        if not root.is_dir():
            raise ValueError(f"{root}: not a folder")
        for folder in _folders(root):
            name = _label(root, folder, roots)
            if (folder / "summary.json").is_file() and (folder / EPISODES_FILE).is_file():
                produced = (folder / "summary.json").stat().st_mtime
                found.append((position, produced, read_eval(name, folder, envs)))
            metrics = folder / "metrics.jsonl"
            if metrics.is_file():
                runs.trainings.append(read_training(name, folder))
            settings = folder / "settings.json"
            if settings.is_file():
                seconds = json.loads(settings.read_text(encoding="utf-8")).get("seconds")
                if isinstance(seconds, dict):
                    runs.stage_times[_label(root, folder.parent, roots) or root.name] = seconds
    runs.evals = [run for _, _, run in sorted(found, key=lambda item: item[:2])]
    if not runs.evals and not runs.trainings:
        raise ValueError(f"no ftrl run under {', '.join(map(str, roots))} (summary.json or metrics.jsonl)")
    return runs


def read_eval(name: str, folder: Path, envs: str | Path | None = None) -> EvalRun:
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    episodes = [row for _, row in iter_jsonl(folder / EPISODES_FILE, allow_torn_tail=True)]
    episodes.sort(key=lambda row: (len(str(row["episode_id"])), str(row["episode_id"])))
    run = EvalRun(name, folder, summary, episodes)
    source = Path(envs) if envs else Path(str(summary.get("envs", "")))
    candidates = [source, folder / source] if not source.is_absolute() else [source]
    path = next((p for p in candidates if str(p) not in ("", ".") and p.is_file()), None)
    if path is None:
        run.envs_note = f"environment file {source} not found: no gold trajectories or per-turn rewards"
        return run
    from ftrl.env.domains import load_source

    try:
        run.envs = load_source(path).envs
    except Exception as error:  # noqa: BLE001 - the episodes are still worth showing
        run.envs_note = f"{path}: {error}"
    return run


def read_training(name: str, folder: Path) -> TrainRun:
    metrics = [row for _, row in iter_jsonl(folder / "metrics.jsonl", allow_torn_tail=True)]
    kind = "sft" if metrics and "loss" in metrics[0] and "reward_mean" not in metrics[0] else "rl"
    samples_file = folder / "samples.jsonl"
    samples = [row for _, row in iter_jsonl(samples_file, allow_torn_tail=True)] if samples_file.is_file() else []
    return TrainRun(name, folder, kind, metrics, samples)


def _cut(text: Any) -> Any:
    if isinstance(text, str) and len(text) > TEXT_CHARS:
        return text[:TEXT_CHARS] + f" [... {len(text) - TEXT_CHARS} more characters]"
    return text


def final_answer(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "assistant"), "")


def question(messages: list[dict[str, Any]]) -> str:
    text = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
    return text.rsplit("Question:", 1)[-1].strip()


def episode_record(row: dict[str, Any], env: Environment | None) -> dict[str, Any]:
    """One episode as the viewer shows it: messages (tool errors marked), the reward of every assistant turn
    (the training reward, Solve-F1 per turn, replayed against the environment), the gold trajectory and answer."""
    messages = [dict(m) for m in row.get("messages", [])]
    names = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[call.get("id")] = call.get("function", {}).get("name", "")
        if message.get("role") == "tool":
            name = names.get(message.get("tool_call_id"), "")
            message["error"] = str(message.get("content") or "").startswith(f"{TOOL_ERROR_PREFIX} {name}:")
        message["content"] = _cut(message.get("content"))
    record: dict[str, Any] = {
        "id": str(row["episode_id"]),
        "scenario": scenario_of(row),
        "metrics": row.get("metrics", {}),
        "correct": bool(row.get("correct")),
        "n_calls": row.get("n_calls", 0),
        "n_errors": row.get("n_errors", 0),
        "turns": row.get("turns", 0),
        "messages": messages,
    }
    if env is not None:
        record["rewards"] = turn_rewards(list(row.get("messages", [])), env)
        record["gold"] = {
            "calls": [
                {
                    "name": call.get("function", {}).get("name", ""),
                    "arguments": call.get("function", {}).get("arguments", ""),
                }
                for call in env.gold_calls or []
            ],
            "unsolved_set": env.unsolved_set,
            "answer": env.answer,
        }
    return record


def turn_rewards(messages: list[dict[str, Any]], env: Environment) -> list[dict[str, Any] | None]:
    """Per message: for an assistant turn, its per-turn Solve-F1 reward (`ftrl.reward.turn`), why, and what it
    solved; None for other messages."""
    remaining = {tool: list(answers) for tool, answers in env.unsolved_set.items()}
    total, solve_rate = max(1, pending_count(remaining)), env.solve_rate
    start = len(env.messages) if messages[: len(env.messages)] == env.messages else 0
    result: list[dict[str, Any] | None] = [None] * len(messages)
    for index in range(start, len(messages)):
        message = messages[index]
        if message.get("role") != "assistant":
            continue
        calls = message.get("tool_calls") or []
        outputs = [str(m.get("content") or "") for m in messages[index + 1 : index + 1 + len(calls)]]
        if len(outputs) < len(calls):
            break
        try:
            score = turn_reward(message, outputs, remaining, solve_rate, env.answer or None)
        except (ValueError, KeyError, TypeError):
            break
        result[index] = {"reward": round(score.reward, 4), "branch": score.branch, "solved": score.solved}
        remaining = score.remaining
        solve_rate = 1 - pending_count(remaining) / total
    return result
