"""Figures for the analysis: a layers x modules heatmap, per-layer lines, and the restore-sweep bar chart.

Uses matplotlib's object API (no pyplot), so plotting never touches global backend state of the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ftrl.analysis.params import ChangeRow

_FAMILY_COLOURS = {"attn": "tab:blue", "mlp": "tab:orange", "norm": "tab:green", "other": "tab:gray"}
_LINE_STYLES = ("-", "--", ":", "-.")


def heatmap(rows: Sequence[ChangeRow], n_layers: int, path: Path) -> Path:
    """Relative change of each fine module kind (columns) in each layer (rows, layer 0 at the top)."""
    import numpy as np

    layered = [row for row in rows if row.layer is not None]
    kinds = list(dict.fromkeys(row.module for row in layered))
    grid = np.full((n_layers, len(kinds)), np.nan)
    for row in layered:
        grid[row.layer, kinds.index(row.module)] = row.relative_change
    figure = Figure(figsize=(1.0 + 0.7 * len(kinds), 1.5 + 0.28 * n_layers), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    axes.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right")
    axes.set_yticks(range(n_layers))
    axes.set_ylabel("layer")
    axes.set_title("relative change ||Δθ|| / ||θ_base||")
    figure.colorbar(image, ax=axes)
    figure.savefig(path, dpi=120)
    return path


def layer_lines(coarse: Sequence[ChangeRow], fine: Sequence[ChangeRow], path: Path) -> Path:
    """Relative change vs layer: per module family (left) and per fine kind (right)."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    for axes, rows, title in zip(figure.subplots(1, 2), (coarse, fine), ("module family", "module kind"), strict=False):
        kinds = list(dict.fromkeys(row.module for row in rows if row.layer is not None))
        for kind in kinds:
            points = sorted(
                (row.layer, row.relative_change) for row in rows if row.module == kind and row.layer is not None
            )
            family = kind.split(".")[0]
            siblings = [other for other in kinds if other.split(".")[0] == family]
            style = _LINE_STYLES[siblings.index(kind) % len(_LINE_STYLES)]
            axes.plot(
                *zip(*points, strict=False),
                style,
                marker="o",
                markersize=3,
                label=kind,
                color=_FAMILY_COLOURS.get(family),
            )
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("layer")
        axes.set_title(f"relative change by {title}")
        axes.legend(fontsize="small")
    figure.axes[0].set_ylabel("||Δθ|| / ||θ_base||")
    figure.savefig(path, dpi=120)
    return path


def sweep_bars(labels: Sequence[str], scores: Sequence[float], path: Path) -> Path:
    """Solve-F1 of base, tuned and each restored model; dashed lines mark base and tuned for reference."""
    figure = Figure(figsize=(1.5 + 0.9 * len(labels), 4.5), layout="constrained")
    axes = figure.add_subplot()
    colours = [_FAMILY_COLOURS.get(label.split("@")[0], "black" if label == "tuned" else "silver") for label in labels]
    bars = axes.bar(range(len(labels)), scores, color=colours)
    axes.bar_label(bars, fmt="%.1f", fontsize="small")
    for reference, colour in (("base", "silver"), ("tuned", "black")):
        if reference in labels:
            axes.axhline(scores[labels.index(reference)], color=colour, linestyle="--", linewidth=1)
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_ylabel("Solve-F1 (x100)")
    axes.set_title("tuned parameters kept only in the named part, base elsewhere")
    figure.savefig(path, dpi=120)
    return path
