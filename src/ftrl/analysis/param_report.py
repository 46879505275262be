"""Write the parameter-change analysis to a folder: CSV and markdown tables plus the two figures."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ftrl.analysis.params import ChangeRow, ParamReport, compare
from ftrl.analysis.plots import heatmap, layer_lines

TOP = 8  # groups listed under "largest shares"


def analyze_params(base: str | Path, tuned: str | Path, out: str | Path) -> ParamReport:
    """Compare two checkpoints and write params.csv, params_by_family.csv, params.md, heatmap.png, layers.png."""
    report = compare(base, tuned)
    write_param_report(report, Path(out), title=f"Parameter change: {base} -> {tuned}")
    return report


def write_param_report(report: ParamReport, out: Path, title: str = "Parameter change") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    fine, coarse = report.rows(), report.rows(coarse=True)
    ranked = sorted((row for row in coarse if row.share > 0), key=lambda row: row.share, reverse=True)[:TOP]
    lines = [
        f"# {title}",
        "",
        "relative = ||Δ||/||θ_base|| (Frobenius over the group), mean |Δ| = average absolute change per element,",
        "share = ||Δ_group||² / Σ ||Δ||² (the group's part of the whole update; shares add up to 100%).",
        "",
        f"Total update norm ||Δ|| = {report.total_delta_sq**0.5:.6g}.",
        "",
        "## Largest shares",
        "",
        *markdown_table(
            ["layer", "family", "share"], [[_layer(row), row.module, f"{100 * row.share:.2f}%"] for row in ranked]
        ),
        "",
        "## By module family",
        "",
        *markdown_table(*_change_table(coarse)),
        "",
        "## By module kind",
        "",
        *markdown_table(*_change_table(fine)),
    ]
    (out / "params.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [
        write_csv(out / "params.csv", [field.name for field in fields(ChangeRow)], [asdict(row) for row in fine]),
        write_csv(
            out / "params_by_family.csv", [field.name for field in fields(ChangeRow)], [asdict(row) for row in coarse]
        ),
        out / "params.md",
        heatmap(fine, report.n_layers, out / "heatmap.png"),
        layer_lines(coarse, fine, out / "layers.png"),
    ]


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def _change_table(rows: Sequence[ChangeRow]) -> tuple[list[str], list[list[str]]]:
    header = ["layer", "module", "params", "relative", "mean abs", "share"]
    body = [
        [
            _layer(row),
            row.module,
            f"{row.numel:,}",
            f"{row.relative_change:.3e}",
            f"{row.mean_abs_change:.3e}",
            f"{100 * row.share:.2f}%",
        ]
        for row in rows
    ]
    return header, body


def _layer(row: ChangeRow) -> str:
    return "-" if row.layer is None else str(row.layer)
