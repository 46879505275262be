"""`ftrl analyze`: where training changed the weights, and which changes carry the gain."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ftrl.cli.common import (
    BatchSizeOption,
    LimitOption,
    MaxTurnsOption,
    _fail,
    app,
    console,
)
from ftrl.provenance import refuse_overlap

analyze_app = typer.Typer(
    help="Where did training change the weights, and which changes carry the gain?", no_args_is_help=True
)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("params")
def analyze_params_command(
    base: Path = typer.Option(..., help="Base model directory (safetensors)."),
    tuned: Path = typer.Option(..., help="Tuned model directory: a full fine-tune or a merged LoRA."),
    out: Path = typer.Option(..., help="Folder for params.csv/.md, params_by_family.csv, heatmap.png, layers.png."),
) -> None:
    """Per layer and module kind: relative change, mean |change| and share of the whole update."""
    from ftrl.analysis import WeightsError, analyze_params

    refuse_overlap(out, [base, tuned])
    try:
        report = analyze_params(base, tuned, out)
    except WeightsError as error:
        raise _fail(str(error)) from None
    console.print(f"{len(report.groups)} (layer, module) groups compared; tables and figures in {out}")


@analyze_app.command("restore")
def analyze_restore_command(
    base: Path = typer.Option(..., help="Base model directory."),
    tuned: Path = typer.Option(..., help="Tuned model directory."),
    out: Path = typer.Option(..., help="New model directory to write."),
    keep: str | None = typer.Option(None, help="SPEC where the tuned weights are kept (base elsewhere), e.g. mlp@0-2."),
    revert: str | None = typer.Option(None, help="SPEC reverted to the base weights (tuned elsewhere)."),
) -> None:
    """Build a hybrid model: tuned weights only inside --keep SPEC, or everywhere except --revert SPEC."""
    from ftrl.analysis import SpecError, WeightsError, restore

    spec = keep if keep is not None else revert
    refuse_overlap(out, [base, tuned])
    if spec is None or (keep is not None and revert is not None):
        raise _fail("give exactly one of --keep SPEC or --revert SPEC")
    try:
        result = restore(base, tuned, spec, out, revert=revert is not None)
    except (WeightsError, SpecError) as error:
        raise _fail(str(error)) from None
    console.print(f"wrote {out}: {len(result.from_tuned)} tensors from tuned, {len(result.from_base)} from base")


@analyze_app.command("sweep")
def analyze_sweep_command(
    base: Path = typer.Option(..., help="Base model directory."),
    tuned: Path = typer.Option(..., help="Tuned model directory."),
    envs: Path = typer.Option(..., help="Evaluation environments (as for `ftrl eval --envs`)."),
    out: Path = typer.Option(..., help="Sweep folder; a rerun skips points that already have results."),
    limit: LimitOption = None,
    keep_models: bool = typer.Option(False, help="Keep the restored model directories after evaluation."),
    max_new_tokens: int = typer.Option(512, help="Tokens per turn; use the budget the tuned model was trained with."),
    max_turns: MaxTurnsOption = 20,
    batch_size: BatchSizeOption = 16,
) -> None:
    """Evaluate base, tuned and six hybrids (MLP/attention x lower/middle/upper layers); plot Solve-F1."""
    from ftrl.analysis import run_sweep
    from ftrl.analysis.sweep import FtrlEvaluator

    refuse_overlap(out, [base, tuned, envs])
    evaluator = FtrlEvaluator(max_new_tokens=max_new_tokens, max_turns=max_turns, batch_size=batch_size)
    try:
        rows = run_sweep(base, tuned, envs, out, limit=limit, evaluator=evaluator, keep_models=keep_models)
    except ValueError as error:
        raise _fail(str(error)) from None
    table = Table("model", "layers", "Solve-F1", title=str(out / "sweep.md"))
    for row in rows:
        table.add_row(row.label, row.region, f"{row.solve_f1:.1f}")
    console.print(table)
