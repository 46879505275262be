"""Commands that run a policy or read runs: sample, eval, report, view."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import typer

from ftrl.cli.common import (
    OverwriteOption,
    ViewerOption,
    _fail,
    _refuse_api_key,
    _viewer,
    app,
    claim_job,
    console,
)
from ftrl.cli_config import ConfigArgs, config_options
from ftrl.jsonl import DataError
from ftrl.provenance import refuse_overlap
from ftrl.rollout.load import EvalConfig, PolicyOptions, SampleConfig


@app.command("sample")
@config_options(SampleConfig, required=("model", "envs", "out"))
def sample_command(overwrite: OverwriteOption = False, *, config_args: ConfigArgs) -> None:
    """Collect training states (history, remaining sub-answers, solve rate) from sampled rollouts."""
    from ftrl.models import ModelNotFound
    from ftrl.rollout import collect

    config = config_args.load(SampleConfig())
    try:
        with _policy_job(config, "sample", folder=False, overwrite=overwrite):
            collect(
                config.spec(),
                Path(config.envs),
                Path(config.out),
                n_per_env=config.n_per_env,
                max_turns=config.max_turns,
                limit=config.limit,
                console=console,
            )
    except (DataError, ModelNotFound, ValueError) as error:
        raise _fail(str(error)) from None


def _policy_job(config: PolicyOptions, job: str, *, folder: bool, overwrite: bool) -> AbstractContextManager[Any]:
    """`claim_job` for `sample` and `eval`, after refusing a key on the command line."""
    _refuse_api_key(config.server.api_key)
    settings = config.results_settings()
    inputs = {"envs": config.envs}
    return claim_job(
        job, config.out, inputs, settings, model=config.model, folder=folder, overwrite=overwrite, limit=config.limit
    )


@app.command("eval")
@config_options(EvalConfig, required=("model", "envs", "out"))
def eval_command(overwrite: OverwriteOption = False, viewer: ViewerOption = True, *, config_args: ConfigArgs) -> None:
    """Evaluate a model: Solve-P/R/F1 per scenario and their mean, answer accuracy, call errors, turns."""
    from ftrl.eval import evaluate
    from ftrl.models import ModelNotFound

    config = config_args.load(EvalConfig())
    try:
        with _policy_job(config, "eval", folder=True, overwrite=overwrite):
            evaluate(
                config.spec(),
                Path(config.envs),
                Path(config.out),
                limit=config.limit,
                max_turns=config.max_turns,
                console=console,
                matcher=config.matcher,
            )
    except (DataError, ModelNotFound, ValueError) as error:
        raise _fail(str(error)) from None
    _viewer(viewer, config.out)


@app.command("report")
def report_command(
    runs: list[Path] = typer.Argument(
        ..., help="Evaluation folders (each with summary.json); with --seeds, loop or demo folders."
    ),
    out: Path = typer.Option(Path("report"), help="Folder for report.md and report.png."),
    seeds: bool = typer.Option(
        False,
        "--seeds",
        help="RUNS are `ftrl demo`/`ftrl loop` runs of different seeds: per seed, its last round minus its warm start, "
        "and the pooled difference with a bootstrap interval resampling environments within seed and scenario.",
    ),
) -> None:
    """Compare evaluation runs side by side (e.g. base vs trained): a table and a bar chart per scenario."""
    from ftrl.eval import report
    from ftrl.eval.compare import comparison_legend, load_runs
    from ftrl.eval.paired import DIFFERENCE_LEGEND
    from ftrl.eval.summary import to_rich

    refuse_overlap(out, runs)
    if seeds:
        _pooled_report(runs, out)
        return

    try:
        rows, differences = report(runs, out)
        legend = comparison_legend(load_runs(runs))
    except (OSError, KeyError, ValueError) as error:
        raise _fail(f"cannot read the runs: {error}") from None
    # one table per metric, a column per run: fits 80 columns for up to ~8 runs (report.md has them side by side)
    for metric, title in (("F1", "Solve-F1"), ("P", "Solve-P"), ("R", "Solve-R")):
        picked = [0] + [i for i, header in enumerate(rows[0]) if header.endswith(f" {metric}")]
        table = [[row[i] for i in picked] for row in rows]
        table[0] = ["scenario", *(rows[0][i].split()[0] for i in picked[1:])]
        console.print(to_rich(table, f"{title} (x100)", legend if metric == "R" else ""))
    if differences:
        console.print(to_rich(differences, "Paired differences of mean Solve-F1 (x100)", DIFFERENCE_LEGEND))
        console.print(legend.split(";")[0])
    console.print(f"wrote {out / 'report.md'} and {out / 'report.png'}")


def _pooled_report(runs: list[Path], out: Path) -> None:
    from ftrl.eval.paired import difference_rows, pooled_difference
    from ftrl.eval.summary import to_markdown, to_rich
    from ftrl.recipes.loop import compared_evaluations

    try:
        pairs = {str(run): compared_evaluations(run) for run in runs}
        per_seed, pooled = pooled_difference(pairs, labels=("warm start", "RL"))
    except (OSError, KeyError, ValueError) as error:
        raise _fail(f"cannot read the runs: {error}") from None
    rows = difference_rows([*per_seed, pooled])
    names = [run.name for run in runs] if len({run.name for run in runs}) == len(runs) else [str(run) for run in runs]
    rows[0][:2] = ["run", "RL - warm"]  # short labels: the table fits 80 columns
    for row, name in zip(rows[1:], [*names, "pooled"], strict=True):
        row[0] = name
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(
        to_markdown(rows, "RL - warm start per seed and pooled (Solve-F1 x100)"), encoding="utf-8"
    )
    (out / "pooled.json").write_text(json.dumps([d.to_dict() for d in [*per_seed, pooled]], indent=2))
    console.print(to_rich(rows, "RL - warm start per seed and pooled (Solve-F1 x100)"))
    console.print(f"wrote {out / 'report.md'} and {out / 'pooled.json'}")


@app.command()
def view(
    runs: list[Path] = typer.Argument(
        ..., help="Run folders: ftrl eval, train, sft, loop or demo outputs (searched recursively)."
    ),
    out: Path = typer.Option(Path("viewer"), help="Folder for the site (index.html opens from disk)."),
    envs: Path | None = typer.Option(
        None, help="Environment file of the evaluations (default: the one each summary.json names)."
    ),
) -> None:
    """A static site to read runs in a browser, no server or network: scores, intervals and training curves,
    every episode as a chat with per-turn rewards beside its gold trajectory, run-vs-run diffs, RL samples."""
    from ftrl.viewer import write_site

    try:
        page = write_site(runs, out, envs)
    except (OSError, ValueError, DataError) as error:
        raise _fail(str(error)) from None
    console.print(f"[green]wrote[/] {page} (open it in a browser)")
