"""`ftrl report`: several evaluation runs side by side (base vs trained is the common case).

Reads each run's `summary.json`, writes `report.md` (one Solve-P/R/F1 table per run pair of columns) and
`report.png` (a bar chart per scenario), and returns the table rows for printing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftrl.eval.paired import difference_rows, pairwise
from ftrl.eval.summary import EPISODES_FILE, METRICS, to_markdown

TITLES = {"solve_p": "Solve-P", "solve_r": "Solve-R", "solve_f1": "Solve-F1"}


def load_runs(dirs: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Summaries by run label: the model name, or the folder name when two runs share a model."""
    summaries = [(Path(d), json.loads((Path(d) / "summary.json").read_text(encoding="utf-8"))) for d in dirs]
    models = [s.get("model", "") for _, s in summaries]
    runs = {}
    for (folder, summary), model in zip(summaries, models, strict=False):
        label = model if model and models.count(model) == 1 else folder.name
        runs[label] = summary
    return runs


def comparison_rows(runs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Header, one row per scenario present in any run, then the mean over scenarios."""
    scenarios: list[str] = []
    for summary in runs.values():
        scenarios += [s for s in summary["scenarios"] if s not in scenarios]
    header = ["scenario"] + [f"{label} {TITLES[key]}" for label in runs for key, _ in METRICS]
    rows = [header]
    for scenario in [*scenarios, "mean"]:
        row = [scenario]
        for summary in runs.values():
            stats = summary["mean"] if scenario == "mean" else summary["scenarios"].get(scenario)
            row += [f"{stats[key]:.1f}" if stats else "-" for key, _ in METRICS]
        rows.append(row)
    return rows


def plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    """Grouped bars: one panel per scenario (and the mean), Solve-P/R/F1 for every run."""
    from matplotlib.figure import Figure  # object API: the caller's pyplot backend is left alone

    panels = [s for s in next(iter(runs.values()))["scenarios"]] + ["mean"]
    for summary in runs.values():
        panels[:-1] += [s for s in summary["scenarios"] if s not in panels]
    figure = Figure(figsize=(3.2 * len(panels), 3.4))
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)
    width = 0.8 / len(runs)
    for axis, panel in zip(axes[0], panels, strict=False):
        for offset, (label, summary) in enumerate(runs.items()):
            stats = summary["mean"] if panel == "mean" else summary["scenarios"].get(panel, {})
            values = [stats.get(key, 0.0) for key, _ in METRICS]
            axis.bar(
                [i + offset * width for i in range(len(METRICS))],
                values,
                width,
                label=label,
            )
        axis.set_title(panel)
        axis.set_xticks(
            [i + width * (len(runs) - 1) / 2 for i in range(len(METRICS))],
            [TITLES[k] for k, _ in METRICS],
        )
        axis.set_ylim(0, 100)
    axes[0][0].set_ylabel("score (x100)")
    axes[0][-1].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report(dirs: Sequence[str | Path], out: str | Path) -> tuple[list[list[str]], list[list[str]]]:
    """Write `OUT/report.md` and `OUT/report.png`; returns the comparison table and, when every run has its
    episodes, the paired differences of each pair of runs (Solve-F1, bootstrap interval over environments)."""
    runs = load_runs(dirs)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(runs)
    text = to_markdown(rows, "Runs side by side")
    differences: list[list[str]] = []
    if len(dirs) > 1 and all((Path(d) / EPISODES_FILE).is_file() for d in dirs):
        differences = difference_rows(pairwise(dict(zip(runs, dirs, strict=False))))
        text += "\n" + to_markdown(differences, "Paired differences of mean Solve-F1 (x100)")
    (folder / "report.md").write_text(text + "\n![runs](report.png)\n", encoding="utf-8")
    plot(runs, folder / "report.png")
    return rows, differences
