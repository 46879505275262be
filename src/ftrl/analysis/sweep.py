"""The restore sweep: which part of the tuned model carries the tool-use gain?

Six hybrids keep the tuned MLP or attention weights of the lower, middle or upper third of the layers (base
weights elsewhere); each is evaluated beside base and tuned. If the paper's claim holds for a run, `mlp@lower`
recovers most of the tuned Solve-F1 and the others stay near base. Every point's evaluation lands in
`runs/<label>/summary.json`; a rerun skips points whose summary exists, so a killed sweep resumes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ftrl.analysis.param_report import markdown_table, write_csv
from ftrl.analysis.plots import sweep_bars
from ftrl.analysis.restore import PROVENANCE, restore
from ftrl.analysis.weights import open_pair

# (model directory, environments file, output directory, limit) -> writes `summary.json` in the output directory
Evaluator = Callable[[Path, Path, Path, int | None], None]
REGIONS = ("lower", "middle", "upper")
FAMILIES = ("mlp", "attn")


@dataclass(frozen=True)
class SweepPoint:
    """One model to evaluate: base, tuned, or a keep-mode hybrid named by its SPEC."""

    label: str
    region: str
    spec: str | None


@dataclass(frozen=True)
class SweepRow:
    label: str
    region: str
    spec: str
    solve_f1: float


def thirds(n_layers: int) -> list[tuple[int, int]]:
    """Split layers 0..n-1 into three contiguous inclusive ranges, larger ones first (10 layers: 0-3, 4-6, 7-9)."""
    if n_layers < 3:
        raise ValueError(f"the sweep needs at least 3 layers to form thirds; the model has {n_layers}")
    sizes = [n_layers // 3 + (index < n_layers % 3) for index in range(3)]
    starts = [sum(sizes[:index]) for index in range(3)]
    return [(start, start + size - 1) for start, size in zip(starts, sizes, strict=False)]


def sweep_points(n_layers: int) -> list[SweepPoint]:
    points = [SweepPoint("base", "-", None), SweepPoint("tuned", "-", None)]
    for region, (first, last) in zip(REGIONS, thirds(n_layers), strict=False):
        layers = str(first) if first == last else f"{first}-{last}"
        points += [SweepPoint(f"{family}@{layers}", region, f"{family}@{layers}") for family in FAMILIES]
    return points


def run_sweep(
    base: str | Path,
    tuned: str | Path,
    envs: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    evaluator: Evaluator | None = None,
    keep_models: bool = False,
) -> list[SweepRow]:
    """Evaluate base, tuned and the six hybrids (skipping finished ones); write sweep.csv, sweep.md, sweep.png."""
    pair = open_pair(base, tuned)  # fail on mismatched checkpoints before spending hours on evaluation
    evaluate = evaluator or FtrlEvaluator()
    folder = Path(out)
    rows = []
    for point in sweep_points(pair.tuned.n_layers):
        summary = folder / "runs" / point.label / "summary.json"
        if not summary.exists():
            _evaluate_point(point, Path(base), Path(tuned), Path(envs), folder, limit, evaluate, keep_models)
        if not summary.exists():
            raise RuntimeError(f"the evaluator finished but wrote no {summary}")
        scores = json.loads(summary.read_text(encoding="utf-8"))
        rows.append(SweepRow(point.label, point.region, point.spec or "-", solve_f1(scores, summary)))
    write_sweep_report(rows, folder)
    return rows


def _evaluate_point(
    point: SweepPoint,
    base: Path,
    tuned: Path,
    envs: Path,
    folder: Path,
    limit: int | None,
    evaluate: Evaluator,
    keep_models: bool,
) -> None:
    if point.spec is None:
        evaluate(base if point.label == "base" else tuned, envs, folder / "runs" / point.label, limit)
        return
    model = folder / "models" / point.label
    if not (model / PROVENANCE).exists():  # a finished restore from an interrupted sweep is reused
        shutil.rmtree(model, ignore_errors=True)
        restore(base, tuned, point.spec, model)
    evaluate(model, envs, folder / "runs" / point.label, limit)
    if not keep_models:
        shutil.rmtree(model)


@dataclass(frozen=True, kw_only=True)
class FtrlEvaluator:
    """The default evaluator: `ftrl eval` as a library call, with the generation budget of the run being
    analysed (a hybrid judged with a longer budget than its tuned model had can ramble for hours)."""

    max_new_tokens: int = 512
    max_turns: int = 20
    batch_size: int = 16

    def __call__(self, model: Path, envs: Path, out: Path, limit: int | None) -> None:
        from ftrl.eval import evaluate
        from ftrl.rollout.load import PolicySpec
        from ftrl.settings import SamplingConfig

        sampling = SamplingConfig(max_new_tokens=self.max_new_tokens)
        spec = PolicySpec(model=str(model), sampling=sampling, batch_size=self.batch_size)
        evaluate(spec, envs, out, limit=limit, max_turns=self.max_turns)


def solve_f1(summary: dict[str, Any], source: Path) -> float:
    """The mean Solve-F1 (x100) of an evaluation summary: `summary["mean"]["solve_f1"]`."""
    mean = summary.get("mean")
    if isinstance(mean, dict):
        for key, value in mean.items():
            if key.lower().replace("-", "_") in ("solve_f1", "f1"):
                return float(value)
    raise ValueError(f"{source}: no mean Solve-F1 (expected a 'mean' object with 'solve_f1')")


def write_sweep_report(rows: list[SweepRow], folder: Path) -> list[Path]:
    """Table with each model's recovery = (F1 - base F1) / (tuned F1 - base F1), plus the bar chart."""
    scores = {row.label: row.solve_f1 for row in rows}
    gap = scores["tuned"] - scores["base"]
    recovery = {row.label: (row.solve_f1 - scores["base"]) / gap if gap else None for row in rows}
    columns = ["label", "region", "spec", "solve_f1", "recovery"]
    table = [[row.label, row.region, row.spec, f"{row.solve_f1:.1f}", _percent(recovery[row.label])] for row in rows]
    lines = [
        "# Restore sweep",
        "",
        "Each hybrid keeps the tuned weights only in SPEC and the base weights elsewhere; Solve-F1 is x100;",
        "recovery = (F1 - base F1) / (tuned F1 - base F1).",
        "",
        *markdown_table(columns, table),
    ]
    (folder / "sweep.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [
        write_csv(folder / "sweep.csv", columns, [{**asdict(row), "recovery": recovery[row.label]} for row in rows]),
        folder / "sweep.md",
        sweep_bars([row.label for row in rows], [row.solve_f1 for row in rows], folder / "sweep.png"),
    ]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
