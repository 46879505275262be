"""Training commands: train, plot, sft, loop, export verl and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ftrl.cli.common import (
    FLAG_NAMES,
    REWARD_FLAGS,
    OverwriteOption,
    ViewerOption,
    _fail,
    _viewer,
    app,
    claim_job,
    console,
)
from ftrl.cli_config import ConfigArgs, apply_config, config_options
from ftrl.jsonl import DataError
from ftrl.provenance import describe_model, refuse_overlap
from ftrl.recipes.demo import DEMO_SETS, DemoConfig
from ftrl.recipes.loop import LOOP_SETS, LoopConfig
from ftrl.reward.spec import RewardSpec
from ftrl.train.config import SFTConfig, TrainConfig, follow_batch_states, make_config


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

    from ftrl.models import ModelNotFound, placement, resolve_model
    from ftrl.train.trainer import train as run_training

    try:
        config = apply_config(make_config(preset), follow_batch_states(config_args.values()))
        placement(config.placement.device, config.placement.dtype)
        resolve_model(config.model)  # a model missing from the cache, then every row, is reported before it loads
        claim = claim_job(
            "train",
            config.out,
            {"data": config.data},
            config.results_settings(),
            model=config.model,
            folder=True,
            overwrite=overwrite,
            tool_timeout_s=config.tool_timeout_s,
        )
        with claim:
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
    try:
        claim = claim_job(
            "sft",
            config.out,
            {"envs": config.envs},
            config.results_settings(),
            model=config.model,
            folder=True,
            overwrite=overwrite,
        )
        with claim:
            saved = run_sft(config, console=console)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    console.print(f"[green]saved[/] {saved}")


def follow_loop_batch_states(values: dict[str, Any]) -> dict[str, Any]:
    """`follow_batch_states` for the train table of a loop or demo."""
    if "train" in values:
        values["train"] = follow_batch_states(values["train"])
    return values


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
    from ftrl.recipes.loop import run_loop

    try:
        config = apply_config(LoopConfig(train=make_config(preset)), follow_loop_batch_states(config_args.values()))
    except ValueError as error:
        raise _fail(str(error)) from None
    inputs = {"envs": config.envs, "eval_envs": config.eval_envs, "warm_start_envs": config.warm_start.envs or None}
    with claim_job(
        "loop", config.out, inputs, config.results_settings(), model=config.model, folder=True, overwrite=overwrite
    ):
        run_loop(config, console=console)
    _viewer(viewer, config.out)


export_app = typer.Typer(help="Export ftrl data to other training stacks.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("verl")
@config_options(RewardSpec, flag_names=REWARD_FLAGS)
def export_verl_command(
    data: Path = typer.Option(..., help="Trajectory states (JSONL/Parquet)."),
    out: Path = typer.Option(..., help="Folder for train.parquet, ftrl_reward.py and the launch scripts."),
    model: str = typer.Option(
        "embedded",
        help="The model verl will train (folder, hub id or 'embedded'): its "
        "chat template renders the prompts, and the scripts train it by default.",
    ),
    multi_turn: bool = typer.Option(
        False,
        help="Also write episodes.parquet, ftrl_agent_loop.yaml and "
        "train_multiturn_grpo.sh for verl's tool agent loop (whole episodes).",
    ),
    overwrite: OverwriteOption = False,
    *,
    config_args: ConfigArgs,
) -> None:
    """States as a verl 0.9.1 dataset with a reward module calling ftrl and the paper's launch scripts."""
    from ftrl.export import export_verl
    from ftrl.models import ModelNotFound

    spec = config_args.load(RewardSpec())
    settings = {"model": describe_model(model), "reward": spec.kind, "matcher": spec.matcher, "multi_turn": multi_turn}
    if spec.fmt != "hermes":  # the format became a choice here later: earlier exports still resume
        settings["format"] = spec.fmt
    try:
        claim = claim_job("export verl", out, {"data": data}, settings, model=model, folder=True, overwrite=overwrite)
        with claim:
            written = export_verl(data, out, model=model, reward=spec, multi_turn=multi_turn)
    except (ValueError, DataError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    for path in written:
        console.print(f"[green]wrote[/] {path}")


@app.command()
@config_options(DemoConfig, flag_names=FLAG_NAMES, omit=LOOP_SETS + DEMO_SETS)
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
        values = follow_loop_batch_states(config_args.values())
        config = apply_config(DemoConfig.profile("quick" if quick else profile), values)
    except ValueError as error:
        raise _fail(str(error)) from None
    if config.seed and "out" not in values:
        config.out += f"-seed{config.seed}"
    run_demo(config, console)
    _viewer(viewer, config.out)
