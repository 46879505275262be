"""Summaries of evaluation episodes as the paper reports them: Solve-P/R/F1 (x100) per scenario and their mean.

Each scenario's numbers are means over its episodes; the headline `solve_p`/`solve_r`/`solve_f1` (top level and
in `mean`) are the mean over scenarios (so every scenario weighs the same, whatever its size), the paper's "Avg"
column; the other numbers in `mean` (accuracy, call errors, turns) are over all episodes.

Solve-P of an episode without a call is 1.0 (the reference's rule, kept so scores stay comparable); `calls`
counts the calls behind each group's numbers, and `defined` says whether a number means anything: a group
without a single call has no precision, and tables, plots and the viewer show it as n/a rather than 100.
Table headers are abbreviated (`LEGEND` spells them out) so a table fits an 80-column terminal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table

from ftrl.env.record import SCENARIOS

#: Where `ftrl eval` writes its episodes, one JSON row each (read back by summaries and paired comparisons).
EPISODES_FILE = "episodes.jsonl"

METRICS = (
    ("solve_p", "solve_precision"),
    ("solve_r", "solve_rate"),
    ("solve_f1", "solve_f1"),
)
COLUMNS = (
    ("n", "n"),
    ("solve_p", "P"),
    ("solve_r", "R"),
    ("solve_f1", "F1"),
    ("accuracy", "acc"),
    ("error_rate", "err%"),
    ("avg_turns", "turns"),
)
#: What the abbreviated headers mean.
LEGEND = (
    "n episodes; P, R, F1 = Solve-P, Solve-R, Solve-F1 (x100); acc = final answer accuracy (%); "
    "err% = tool calls that failed (%); turns = assistant turns per episode; n/a = no tool call, so no precision"
)
NA = "n/a"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _group(rows: list[dict[str, Any]]) -> dict[str, Any]:
    calls = sum(row["n_calls"] for row in rows)
    stats: dict[str, Any] = {"n": len(rows)}
    for key, metric in METRICS:
        stats[key] = 100 * _mean([row["metrics"][metric] for row in rows])
    stats["accuracy"] = 100 * _mean([float(row["correct"]) for row in rows])
    stats["error_rate"] = 100 * sum(row["n_errors"] for row in rows) / calls if calls else 0.0
    stats["avg_turns"] = _mean([row["turns"] for row in rows])
    stats["avg_calls"] = calls / len(rows) if rows else 0.0
    stats["calls"] = calls
    return stats


def defined(stats: dict[str, Any], key: str) -> bool:
    """Whether `stats[key]` means something: Solve-P (and the call error rate) need at least one call.

    Summaries written before `calls` was recorded have `avg_calls`, which is 0 exactly when no call was made."""
    if key not in ("solve_p", "error_rate"):
        return True
    calls = stats.get("calls", stats.get("avg_calls"))
    return calls is None or calls > 0


def shown(stats: dict[str, Any] | None, key: str) -> float | None:
    """The value a table or plot shows: None when `stats` is missing or the metric is undefined for it."""
    if not stats or key not in stats or not defined(stats, key):
        return None
    return float(stats[key])


def scenario_of(row: dict[str, Any]) -> str:
    return str(row.get("data_source", "")).rsplit("/", 1)[-1]


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-scenario and overall numbers of `episodes.jsonl` rows."""
    rows = list(rows)
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_scenario.setdefault(scenario_of(row), []).append(row)
    order = [s for s in SCENARIOS if s in by_scenario] + sorted(s for s in by_scenario if s not in SCENARIOS)
    scenarios = {name: _group(by_scenario[name]) for name in order}
    overall = _group(rows)
    for key, _ in METRICS:
        overall[key] = _mean([stats[key] for stats in scenarios.values()])
    return {
        **{key: overall[key] for key, _ in METRICS},
        "mean": overall,
        "scenarios": scenarios,
    }


def _cell(key: str, stats: dict[str, Any]) -> str:
    if key == "n":
        return str(stats[key])
    value = shown(stats, key)
    if value is None:
        return NA
    return f"{value:.2f}" if key == "avg_turns" else f"{value:.1f}"


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Header (abbreviated: `LEGEND`) and one row per scenario, then the mean over scenarios."""
    rows = [["scenario", *(title for _, title in COLUMNS)]]
    for name, stats in summary["scenarios"].items():
        rows.append([name, *(_cell(key, stats) for key, _ in COLUMNS)])
    rows.append(["mean", *(_cell(key, summary["mean"]) for key, _ in COLUMNS)])
    return rows


def to_markdown(rows: list[list[str]], title: str = "", legend: str = "") -> str:
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    if legend:
        lines += ["", legend]
    return "\n".join(lines) + "\n"


def to_rich(rows: list[list[str]], title: str = "", legend: str = "") -> Table:
    """A table whose cells are never cut: the first column does not wrap and the others are short (`LEGEND`)."""
    table = Table(title=title or None, caption=legend or None, caption_justify="left")
    for index, header in enumerate(rows[0]):
        table.add_column(header, justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows[1:]:
        table.add_row(*row, style="bold" if row[0] == "mean" else None)
    return table
