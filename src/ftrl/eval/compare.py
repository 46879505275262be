"""`ftrl report`: several evaluation runs side by side (base vs trained is the common case).

Reads each run's `summary.json`, writes `report.md` (one Solve-P/R/F1 table per run pair of columns) and
`report.png` (a bar chart per scenario), and returns the table rows for printing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ftrl.eval.paired import DIFFERENCE_LEGEND, PairedDifference, difference_rows, pairwise
from ftrl.eval.summary import EPISODES_FILE, METRICS, NA, shown, to_markdown

TITLES = {"solve_p": "Solve-P", "solve_r": "Solve-R", "solve_f1": "Solve-F1"}
SHORT = {"solve_p": "P", "solve_r": "R", "solve_f1": "F1"}


def load_runs(dirs: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Summaries by run label: the model name, or the folder name when two runs share a model."""
    summaries = [(Path(d), json.loads((Path(d) / "summary.json").read_text(encoding="utf-8"))) for d in dirs]
    models = [s.get("model", "") for _, s in summaries]
    runs = {}
    for (folder, summary), model in zip(summaries, models, strict=False):
        label = model if model and models.count(model) == 1 else folder.name
        runs[label] = summary
    return runs


def run_letters(runs: dict[str, Any]) -> dict[str, str]:
    """Run label -> the letter its table columns carry (A, B, ...): labels are folder or model names, too long
    to repeat in every header of an 80-column table."""
    return {label: chr(ord("A") + index) if index < 26 else str(index) for index, label in enumerate(runs)}


def comparison_legend(runs: dict[str, Any]) -> str:
    names = ", ".join(f"{letter} = {label}" for label, letter in run_letters(runs).items())
    return f"{names}; P, R, F1 = Solve-P, Solve-R, Solve-F1 (x100); n/a = no tool call, so no precision"


def comparison_rows(runs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Header (`A P`, `A R`, `A F1`, `B P`...: `comparison_legend`), one row per scenario present in any run,
    then the mean over scenarios; `-` where a run lacks the scenario, n/a where a metric is undefined."""
    scenarios: list[str] = []
    for summary in runs.values():
        scenarios += [s for s in summary["scenarios"] if s not in scenarios]
    letters = run_letters(runs)
    header = ["scenario"] + [f"{letters[label]} {SHORT[key]}" for label in runs for key, _ in METRICS]
    rows = [header]
    for scenario in [*scenarios, "mean"]:
        row = [scenario]
        for summary in runs.values():
            stats = summary["mean"] if scenario == "mean" else summary["scenarios"].get(scenario)
            for key, _ in METRICS:
                value = shown(stats, key)
                row.append("-" if not stats else NA if value is None else f"{value:.1f}")
        rows.append(row)
    return rows


def plot(runs: dict[str, dict[str, Any]], path: Path, differences: list[PairedDifference] | None = None) -> None:
    """Grouped bars: one panel per scenario (and the mean), Solve-P/R/F1 for every run. An undefined metric (no
    call, no precision) is no bar but an "n/a" label. With `differences` (paired intervals of Solve-F1), a last
    panel draws each run's difference from the run before it with its 95% interval."""
    from matplotlib.figure import Figure  # object API: the caller's pyplot backend is left alone

    panels = [s for s in next(iter(runs.values()))["scenarios"]] + ["mean"]
    for summary in runs.values():
        panels[:-1] += [s for s in summary["scenarios"] if s not in panels]
    steps = consecutive(runs, differences or [])
    count = len(panels) + bool(steps)
    figure = Figure(figsize=(3.2 * count, 3.4))
    axes = figure.subplots(1, count, squeeze=False)
    width = 0.8 / len(runs)
    for axis, panel in zip(axes[0], panels, strict=False):
        for offset, (label, summary) in enumerate(runs.items()):
            stats = summary["mean"] if panel == "mean" else summary["scenarios"].get(panel, {})
            values = [shown(stats, key) for key, _ in METRICS]
            places = [i + offset * width for i in range(len(METRICS))]
            axis.bar(places, [v or 0.0 for v in values], width, label=label)
            for place, value in zip(places, values, strict=True):
                if value is None:
                    axis.text(place, 1, NA, rotation=90, ha="center", va="bottom", fontsize=7, color="dimgray")
        axis.set_title(panel)
        axis.set_xticks(
            [i + width * (len(runs) - 1) / 2 for i in range(len(METRICS))],
            [TITLES[k] for k, _ in METRICS],
        )
        axis.set_ylim(0, 100)
        if axis is not axes[0][0]:
            axis.tick_params(labelleft=False)
    axes[0][0].set_ylabel("score (x100)")
    axes[0][len(panels) - 1].legend(fontsize="small")
    if steps:
        axis = axes[0][-1]
        for row, d in enumerate(steps):
            color = "tab:green" if d.low > 0 else "tab:red" if d.high < 0 else "tab:gray"
            axis.errorbar(d.mean, row, xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", color=color, capsize=4)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.set_yticks(range(len(steps)), [f"{d.b} - {d.a}" for d in steps])
        axis.set_ylim(-0.7, len(steps) - 0.3)
        axis.invert_yaxis()
        axis.set_title("Solve-F1 change, 95% CI")
        axis.set_xlabel("paired difference (x100)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report(dirs: Sequence[str | Path], out: str | Path) -> tuple[list[list[str]], list[list[str]]]:
    """Write `OUT/report.md` and `OUT/report.png`; returns the comparison table and, when every run has its
    episodes, the paired differences of each pair of runs (Solve-F1, bootstrap interval over environments)."""
    runs = load_runs(dirs)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(runs)
    text = to_markdown(rows, "Runs side by side", comparison_legend(runs))
    differences: list[list[str]] = []
    paired: list[PairedDifference] = []
    if len(dirs) > 1 and all((Path(d) / EPISODES_FILE).is_file() for d in dirs):
        letters = run_letters(runs)  # run labels are folder or model names: too long for an 80-column table
        paired = pairwise({letters[label]: folder for label, folder in zip(runs, dirs, strict=False)})
        differences = difference_rows(paired)
        legend = f"{DIFFERENCE_LEGEND}; {comparison_legend(runs).split(';')[0]}"
        text += "\n" + to_markdown(differences, "Paired differences of mean Solve-F1 (x100)", legend)
    (folder / "report.md").write_text(text + "\n![runs](report.png)\n", encoding="utf-8")
    plot(runs, folder / "report.png", [_named(d, runs) for d in paired])
    return rows, differences


def _named(difference: PairedDifference, runs: dict[str, Any]) -> PairedDifference:
    """A difference labelled by letters, relabelled with the run names (the plot has room for them)."""
    names = {letter: label for label, letter in run_letters(runs).items()}
    return replace(difference, a=names[difference.a], b=names[difference.b])


def consecutive(runs: dict[str, Any], differences: list[PairedDifference]) -> list[PairedDifference]:
    """Of all pairs, each run against the run before it (the stages of a pipeline, in order)."""
    labels = list(runs)
    wanted = set(zip(labels, labels[1:], strict=False))
    return [d for d in differences if (d.a, d.b) in wanted]
