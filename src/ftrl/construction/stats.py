"""Statistics of an environment file, to compare a build with the paper's data (`ftrl stats`).

A tool is a distractor when it is not a key of `unsolved_set` (this needs no gold trajectory, so reference
files work too). Rejection reasons come from the build's `<out>.rejections.jsonl` when it exists.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from ftrl.env.io import read_envs
from ftrl.env.record import SCENARIOS, Environment
from ftrl.jsonl import iter_jsonl

PARAMETER_TYPES = ("string", "integer", "number", "boolean", "array", "object")


@dataclass
class GroupStats:
    """Averages over the environments of one scenario (or all of them)."""

    envs: int = 0
    sub_answers: float = 0.0
    tools: float = 0.0
    solver_tools: float = 0.0
    distractor_share: float = 0.0
    params_per_tool: float = 0.0
    required_per_tool: float = 0.0
    tools_with_enum: float = 0.0
    params_with_enum: float = 0.0
    params_with_default: float = 0.0
    type_mix: dict[str, float] = field(default_factory=dict)


@dataclass
class FileStats:
    groups: dict[str, GroupStats]
    rejections: dict[str, int] = field(default_factory=dict)

    def as_rows(self) -> list[dict[str, Any]]:
        """One flat dict per group, for tables and reports."""
        rows = []
        for name, group in self.groups.items():
            row = {"scenario": name, **{k: v for k, v in vars(group).items() if k != "type_mix"}}
            row.update({f"type_{t}": group.type_mix.get(t, 0.0) for t in PARAMETER_TYPES})
            rows.append(row)
        return rows


def group_stats(envs: list[Environment]) -> GroupStats:
    """Averages over environments; shares of tools and parameters are pooled over all of them."""
    if not envs:
        return GroupStats()
    tools = [tool for env in envs for tool in env.tools]
    params = [p for tool in tools for p in _properties(tool).values()]
    types = Counter(p.get("type", "?") if isinstance(p, dict) else "?" for p in params)
    return GroupStats(
        envs=len(envs),
        sub_answers=mean(env.pending_count for env in envs),
        tools=mean(len(env.tools) for env in envs),
        solver_tools=mean(len(env.unsolved_set) for env in envs),
        distractor_share=sum(n not in env.unsolved_set for env in envs for n in env.tool_names) / max(1, len(tools)),
        params_per_tool=len(params) / max(1, len(tools)),
        required_per_tool=sum(len(_parameters(t).get("required") or []) for t in tools) / max(1, len(tools)),
        tools_with_enum=sum(any("enum" in p for p in _properties(t).values()) for t in tools) / max(1, len(tools)),
        params_with_enum=sum("enum" in p for p in params) / max(1, len(params)),
        params_with_default=sum("default" in p for p in params) / max(1, len(params)),
        type_mix={t: types[t] / max(1, len(params)) for t in PARAMETER_TYPES},
    )


def file_stats(envs: Iterable[Environment], rejections: Iterable[dict[str, Any]] = ()) -> FileStats:
    """Per-scenario and overall statistics, plus rejection counts by `stage: reason` pattern."""
    envs = list(envs)
    by_scenario: dict[str, list[Environment]] = {}
    for env in envs:
        by_scenario.setdefault(env.scenario, []).append(env)
    order = [s for s in SCENARIOS if s in by_scenario] + sorted(set(by_scenario) - set(SCENARIOS))
    groups = {name: group_stats(by_scenario[name]) for name in order}
    groups["all"] = group_stats(envs)
    reasons = Counter(f"{row.get('stage')}: {_reason_pattern(str(row.get('reason', '')))}" for row in rejections)
    return FileStats(groups, dict(reasons.most_common()))


def stats_for_path(path: str | Path) -> FileStats:
    """Statistics of an environment file, with its rejection sidecar when there is one."""
    sidecar = Path(f"{path}.rejections.jsonl")
    rejections = [row for _, row in iter_jsonl(sidecar, allow_torn_tail=True)] if sidecar.exists() else []
    return file_stats(read_envs(path, allow_torn_tail=True), rejections)


def plot_stats(stats: FileStats, out: str | Path) -> None:
    """A 2x2 figure: sub-answers and tools per environment, distractor share, parameter type mix."""
    from matplotlib.figure import Figure  # object API: the caller's pyplot backend is left alone

    names = list(stats.groups)
    groups = list(stats.groups.values())
    figure = Figure(figsize=(11, 7))
    axes = figure.subplots(2, 2)
    panels = [
        ("sub-answers per environment", "sub_answers"),
        ("tools per environment", "tools"),
        ("distractor share", "distractor_share"),
    ]
    for axis, (title, key) in zip(axes.flat, panels, strict=False):
        axis.bar(names, [getattr(g, key) for g in groups], color="tab:blue")
        axis.set_title(title)
        axis.tick_params(axis="x", rotation=25)
    axis = axes.flat[3]
    bottom = [0.0] * len(groups)
    for kind in PARAMETER_TYPES:
        values = [g.type_mix.get(kind, 0.0) for g in groups]
        axis.bar(names, values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.set_title("parameter types")
    axis.legend(fontsize=7)
    axis.tick_params(axis="x", rotation=25)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    parameters = tool.get("function", tool).get("parameters") or {}
    return parameters if isinstance(parameters, dict) else {}


def _properties(tool: dict[str, Any]) -> dict[str, Any]:
    properties = _parameters(tool).get("properties") or {}
    return {k: v for k, v in properties.items() if isinstance(v, dict)} if isinstance(properties, dict) else {}


def _reason_pattern(reason: str) -> str:
    """Group reasons that differ only in names and values: keep the summary before the first ': ' detail."""
    summary = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason.split(": ", 1)[0])
    return re.sub(r"\d+", "N", re.sub(r"\([^)]*\)", "(…)", summary))[:120]
