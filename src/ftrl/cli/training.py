"""Training commands: train, plot, sft, loop, export verl and the demo."""

from __future__ import annotations

from pathlib import Path

import typer

from ftrl.cli.common import (
    FLAG_NAMES,
    OverwriteOption,
    ViewerOption,
    _fail,
    _load_envs_checked,
    _local,
    _viewer,
    app,
    check_tool_code,
    console,
)
from ftrl.cli_config import ConfigArgs, apply_config, config_options
from ftrl.jsonl import DataError
from ftrl.provenance import claim_output, describe_model, refuse_overlap
from ftrl.recipes.demo import DemoConfig
from ftrl.recipes.loop import LoopConfig
from ftrl.reward.spec import MatcherName, RewardKind
from ftrl.train.config import SFTConfig, TrainConfig, make_config


@app.command()
@config_options(TrainConfig, defaults=make_config("cpu"), required=("data", "out"), flag_names=FLAG_NAMES)
def train(
    preset: str = typer.Option(
        "cpu",
        help="The defaults: paper (the reference verl settings) or cpu (small model, 2 cores; the defaults shown). "
        "A --config file, then the flags given, apply on top.",
    ),
    overwrite: OverwriteOption = False,
    viewer: ViewerOption = True,
    *,
    config_args: ConfigArgs,
) -> None:
    """RL on trajectory states with the per-turn verifiable reward; resumes from DIR/checkpoints when present."""

    from ftrl.env.domains import load_source
    from ftrl.models import ModelNotFound, placement, resolve_model
    from ftrl.train.trainer import train as run_training

    try:
        values = config_args.values()
        if "batch_states" in values and "mini_batch_states" not in values:
            values["mini_batch_states"] = values["batch_states"]  # one update a step unless told otherwise
        config = apply_config(make_config(preset), values)
        placement(config.device, config.dtype)
        resolve_model(config.model)  # a model missing from the cache, then every row, is reported before it loads
        source = load_source(config.data)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    check_tool_code(source, timeout_s=config.tool_timeout_s)
    del source
    settings = config.results_settings()
    try:
        train_claim = claim_output(
            config.out,
            "train",
            {"data": config.data},
            settings,
            folder=True,
            overwrite=overwrite,
            reads=_local(config.model),
        )
        with train_claim:
            saved = run_training(config, console=console)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    console.print(f"[green]saved[/] {saved}")
    _viewer(viewer, config.out)


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run directories holding metrics.jsonl."),
    out: Path = typer.Option(Path("training.png"), help="PNG to write."),
) -> None:
    """Training curves (reward, tool-call rate, KL, entropy, length, clipping) of one or more runs."""
    from ftrl.train.plot import plot_runs

    refuse_overlap(out, runs)
    console.print(f"[green]wrote[/] {plot_runs(runs, out)}")


@app.command()
@config_options(SFTConfig, required=("envs", "out"), flag_names=FLAG_NAMES)
def sft(overwrite: OverwriteOption = False, *, config_args: ConfigArgs) -> None:
    """Supervised warm start on gold tool-call trajectories (loss on assistant tokens only)."""
    from ftrl.models import ModelNotFound
    from ftrl.train.sft import sft as run_sft

    config = config_args.load(SFTConfig())
    refuse_overlap(config.out, [config.envs, *_local(config.model)])
    _load_envs_checked(Path(config.envs), None)  # before the model loads
    settings = config.results_settings()
    try:
        claim = claim_output(
            config.out,
            "sft",
            {"envs": config.envs},
            settings,
            folder=True,
            overwrite=overwrite,
            reads=_local(config.model),
        )
        with claim:
            saved = run_sft(config, console=console)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    console.print(f"[green]saved[/] {saved}")


#: Fields of `ftrl loop`'s sub-configs that the loop sets per round: no flags.
LOOP_SETS = ("train.model", "train.data", "train.out", "train.seed", "warm_start.model", "warm_start.out")


@app.command()
@config_options(
    LoopConfig,
    required=("envs", "eval_envs", "out"),
    flag_names=FLAG_NAMES,
    omit=LOOP_SETS,
)
def loop(
    preset: str = typer.Option(
        "cpu",
        help="The defaults of the train table: paper (the reference verl settings) or cpu (small model, 2 cores; "
        "the defaults shown). A --config file, then the flags given, apply on top.",
    ),
    overwrite: OverwriteOption = False,
    viewer: ViewerOption = True,
    *,
    config_args: ConfigArgs,
) -> None:
    """The paper's recipe: an optional warm start, then per round collect states with the current policy, train on
    them, evaluate."""
    from dataclasses import asdict

    from ftrl.recipes.loop import run_loop

    try:
        config = config_args.load(LoopConfig(train=make_config(preset)))
    except ValueError as error:
        raise _fail(str(error)) from None
    inputs = {"envs": config.envs, "eval_envs": config.eval_envs, "warm_start_envs": config.warm_start.envs or None}
    refuse_overlap(config.out, [*inputs.values(), *_local(config.model)])
    for path in filter(None, inputs.values()):
        _load_envs_checked(Path(path), None)  # before the first model loads
    # more rounds extend a loop; everything else decides what the rounds already done produced
    settings = {
        **asdict(config),
        "model": describe_model(config.model),
        "out": None,
        "rounds": None,
        "envs": None,
        "eval_envs": None,
        "train": {
            **asdict(config.train),
            **dict.fromkeys(("save_every", "keep_checkpoints", "tool_workers", "log_samples", "report_to")),
        },
        "warm_start": {**asdict(config.warm_start), "envs": None, "report_to": None},
    }
    with claim_output(
        config.out, "loop", inputs, settings, folder=True, overwrite=overwrite, reads=_local(config.model)
    ):
        run_loop(config, console=console)
    _viewer(viewer, config.out)


export_app = typer.Typer(help="Export ftrl data to other training stacks.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("verl")
def export_verl_command(
    data: Path = typer.Option(..., help="Trajectory states (JSONL/Parquet)."),
    out: Path = typer.Option(..., help="Folder for train.parquet, ftrl_reward.py and the launch scripts."),
    model: str = typer.Option(
        "embedded",
        help="The model verl will train (folder, hub id or 'embedded'): its "
        "chat template renders the prompts, and the scripts train it by default.",
    ),
    reward: RewardKind = typer.Option("f1", help="Per-turn reward: f1, p, r or pr."),
    matcher: MatcherName = typer.Option("reference", help="Sub-answer matcher: reference or strict."),
    multi_turn: bool = typer.Option(
        False,
        help="Also write episodes.parquet, ftrl_agent_loop.yaml and "
        "train_multiturn_grpo.sh for verl's tool agent loop (whole episodes).",
    ),
    overwrite: OverwriteOption = False,
) -> None:
    """States as a verl 0.9.1 dataset with a reward module calling ftrl and the paper's launch scripts."""
    from ftrl.export import export_verl
    from ftrl.models import ModelNotFound
    from ftrl.reward import RewardSpec

    spec = RewardSpec(kind=reward, matcher=matcher)
    refuse_overlap(out, [data, *_local(model)])
    _load_envs_checked(data, None)
    settings = {"model": describe_model(model), "reward": reward, "matcher": matcher, "multi_turn": multi_turn}
    try:
        claim = claim_output(
            out, "export verl", {"data": data}, settings, folder=True, overwrite=overwrite, reads=_local(model)
        )
        with claim:
            written = export_verl(data, out, model=model, reward=spec, multi_turn=multi_turn)
    except (ValueError, DataError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    for path in written:
        console.print(f"[green]wrote[/] {path}")


@app.command()
@config_options(DemoConfig, flag_names=FLAG_NAMES)
def demo(
    quick: bool = typer.Option(
        False, help="A few-minute version on tiny sets (what the end-to-end test runs); the same as --profile quick."
    ),
    profile: str = typer.Option(
        "default",
        help="The recipe: default (at most 30 minutes on 2 CPU cores; the defaults shown), quick, or long (three RL "
        "rounds, ~35 minutes). A --config file, then the flags given, apply on top.",
    ),
    viewer: ViewerOption = True,
    *,
    config_args: ConfigArgs,
) -> None:
    """The whole loop on one machine: build, evaluate, warm-start, RL-train, evaluate again, report. Resumable."""
    from ftrl.recipes.demo import run_demo

    try:
        values = config_args.values()
        config = apply_config(DemoConfig.profile("quick" if quick else profile), values)
    except ValueError as error:
        raise _fail(str(error)) from None
    if config.seed and "out" not in values:
        config.out += f"-seed{config.seed}"
    run_demo(config, console)
    _viewer(viewer, config.out)
