"""Training curves from one or more run directories' `metrics.jsonl` (one line per run per panel)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ftrl.jsonl import iter_jsonl

PANELS = (
    ("reward_mean", "reward (mean)"),
    ("tool_call_rate", "tool-call rate"),
    ("kl", "KL to reference (k3)"),
    ("entropy", "entropy"),
    ("response_len", "response length (tokens)"),
    ("clip_frac", "clip fraction"),
)


def read_metrics(run: str | Path) -> list[dict]:
    return [row for _, row in iter_jsonl(Path(run) / "metrics.jsonl", allow_torn_tail=True)]


def plot_runs(runs: Sequence[str | Path], out: str | Path) -> Path:
    """Draw the metrics of every run (labelled by folder name) into one PNG."""
    from matplotlib.figure import Figure  # object API: the caller's pyplot backend is left alone

    fig = Figure(figsize=(13, 7), constrained_layout=True)
    axes = fig.subplots(2, 3)
    for run in runs:
        rows = read_metrics(run)
        for ax, (key, title) in zip(axes.flat, PANELS, strict=False):
            points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=False), marker=".", label=Path(run).name)
            ax.set_title(title)
            ax.set_xlabel("step")
    axes.flat[0].legend()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
