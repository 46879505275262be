"""The `ftrl` command line: a thin Typer layer over the library; each command parses options and calls one function."""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ftrl.cli_config import ConfigArgs, apply_config, config_options
from ftrl.env.record import Environment, tool_name
from ftrl.jsonl import DataError, iter_jsonl, write_jsonl_atomic
from ftrl.provenance import claim_output, describe_model, refuse_overlap
from ftrl.recipes.demo import DemoConfig
from ftrl.recipes.loop import LoopConfig
from ftrl.reward.spec import FormatName, MatcherName, RewardKind
from ftrl.rollout.load import EvalConfig, PolicyOptions, SampleConfig
from ftrl.train.config import SFTConfig, TrainConfig, make_config

if TYPE_CHECKING:
    from ftrl.env.domains import EnvSource
    from ftrl.settings import ServerConfig

console = Console()


class _SafeGroup(TyperGroup):
    """Every fault a user can cause (bad files, options, data, server failures) ends as one message and a non-zero
    exit, never a traceback; commands raise specific messages, this is the net under them. `FTRL_DEBUG=1` lets the
    traceback through for bug reports."""

    def invoke(self, ctx: Any) -> Any:
        from ftrl.threads import configure_threads

        configure_threads()  # before any command imports torch
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors and exits: Typer reports them itself
            raise
        except Exception as error:  # noqa: BLE001 - the last line of defence of a command-line tool
            if os.environ.get("FTRL_DEBUG"):
                raise
            raise _fail(describe_error(error)) from None


def describe_error(error: Exception) -> str:
    """One line for an exception that reached the command line."""
    import httpx

    from ftrl.openai_http import EndpointError

    if isinstance(error, EndpointError):
        return f"model server: {error}"
    if isinstance(error, httpx.HTTPError):
        return f"model server: {type(error).__name__}: {error}"
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    if isinstance(error, MemoryError):
        return "out of memory"
    if isinstance(error, ValueError):  # DataError, OutputError and the library's own checks say what is wrong
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error} (FTRL_DEBUG=1 shows the traceback)"


app = typer.Typer(
    cls=_SafeGroup,
    help="Feedback-driven tool-use RL in automatically built, verifiable environments.",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=2)


OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out instead of resuming it.")]
ViewerOption = Annotated[
    bool, typer.Option("--viewer/--no-viewer", help="Write the run viewer (a static site) into OUT/viewer.")
]

#: Config fields whose flag is not derived from their name (`ftrl.cli_config`): names users already type.
FLAG_NAMES = {
    # `ftrl loop`: the flags its fields had before they moved into the nested train and warm-start configs
    "train.max_new_tokens": "--train-max-new-tokens",
    "train.lora": "--lora",
    "warm_start.envs": "--warm-start-envs",
    "warm_start.epochs": "--warm-start-epochs",
    "warm_start.lr": "--warm-start-lr",
}


def _local(*paths: str | Path | None) -> list[Path]:
    """The paths among `paths` that exist here (a `--model` may also be a name such as `embedded`)."""
    return [Path(path) for path in paths if path and Path(path).exists()]


def check_tool_code(source: EnvSource, count: int | None = None, timeout_s: float = 10.0) -> None:
    """`ftrl.env.validate.check_tool_code`, its refusal as the command's error."""
    from ftrl.env.validate import BrokenToolCode
    from ftrl.env.validate import check_tool_code as check

    try:
        check(source, count, timeout_s)
    except BrokenToolCode as error:
        raise _fail(str(error)) from None


# Options that `bench` and `analyze sweep` share with the policy jobs, whose own flags derive from


# `ftrl.rollout.load.PolicyOptions`.
LimitOption = Annotated[int | None, typer.Option(min=1, help="Only the first K environments.")]
MaxTurnsOption = Annotated[int, typer.Option(min=1, help="Assistant turns per episode.")]
MaxNewTokensOption = Annotated[int, typer.Option(min=1, help="Tokens per assistant turn.")]
BatchSizeOption = Annotated[
    int, typer.Option(min=1, help="Episodes in flight (rows per generate call / concurrent requests).")
]
BaseUrlOption = Annotated[str | None, typer.Option(help="OpenAI-compatible server (…/v1) serving --model.")]
_API_KEY_HELP = "File whose first line is the API key for --base-url (default $OPENAI_API_KEY)."
ApiKeyFileOption = Annotated[str | None, typer.Option("--api-key-file", help=_API_KEY_HELP)]
#: `--api-key KEY` is refused: a command line is readable by every process of the host (`/proc/<pid>/cmdline`),
#: generated tool code included, which could return the key into tool messages, requests and written data.
ApiKeyOption = Annotated[str | None, typer.Option("--api-key", hidden=True, help="Refused; see --api-key-file.")]
API_KEY_REFUSED = (
    "--api-key is refused: a key on the command line is readable by every process of this host in "
    "/proc/<pid>/cmdline (tool code included); put it in $OPENAI_API_KEY or in a file given as --api-key-file"
)
EnableThinkingOption = Annotated[bool, typer.Option("--enable-thinking", help="Let reasoning models think.")]


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


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Environment files (JSONL/Parquet) or domain folders."),
    run_code: bool = typer.Option(True, help="Also load every tool's code in the isolated runtime."),
    show_ok: bool = typer.Option(False, help="List valid rows too, not only those with problems."),
    strict: bool = typer.Option(False, help="Fail on warnings too (rows that can be used but look wrong)."),
) -> None:
    """Load, validate and compile every environment; exit 1 if any row is invalid (or, with --strict, warned)."""
    from ftrl.env.validate import validate_path
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    table = Table("file", "row", "line", "scenario", "status", "problems")
    invalid = warned = total = 0
    with ToolRuntime(RuntimeConfig()) as runtime:
        for path in files:
            try:
                reports = validate_path(path, runtime.check if run_code else None)
            except DataError as error:
                raise _fail(str(error)) from None
            if not reports:
                raise _fail(f"{path}: no rows (an empty file or folder)")
            for report in reports:
                total += 1
                invalid += not report.ok
                warned += report.ok and report.warned
                if not report.issues and not show_ok:
                    continue
                scenario = report.env.scenario if report.env else "-"
                status = (
                    "[green]ok[/]" if not report.issues else "[yellow]warning[/]" if report.ok else "[red]invalid[/]"
                )
                problems = escape("\n".join(str(issue) for issue in report.issues))
                table.add_row(str(path), str(report.row), str(report.line or "-"), scenario, status, problems)
    if table.row_count:
        console.print(table)
    colour = "red" if invalid or (strict and warned) else "yellow" if warned else "green"
    console.print(f"[{colour}]{total - invalid}/{total} rows valid, {warned} with warnings[/]")
    if invalid or (strict and warned):
        raise typer.Exit(code=1)


def _load_row(file: Path, row: int) -> tuple[EnvSource, Environment]:
    from ftrl.env.domains import load_source

    try:
        source = load_source(file)
    except DataError as error:
        raise _fail(str(error)) from None
    if not 0 <= row < len(source.envs):
        raise _fail(f"{file}: row {row} out of range (0..{len(source.envs) - 1})")
    return source, source.envs[row]


@app.command()
def call(
    file: Path = typer.Argument(..., help="Environment file or domain folder."),
    row: int = typer.Option(0, help="0-based row index."),
    tool: str = typer.Option(..., help="Tool name."),
    args: str = typer.Option("{}", help="Arguments as a JSON object."),
    timeout: float = typer.Option(10.0, min=0.01, max=3600, help="Seconds before the call is stopped."),
) -> None:
    """Run one tool call in that environment (isolated) and print the tool message content."""
    import json

    from ftrl.runtime import RuntimeConfig, ToolRuntime

    source, env = _load_row(file, row)
    if tool not in env.codes:
        raise _fail(f"{file}: row {row} has no tool {tool!r}; its tools: {', '.join(sorted(env.codes)) or 'none'}")
    try:
        arguments = json.loads(args)
    except ValueError as error:
        raise _fail(f"--args is not JSON: {error}") from None
    if not isinstance(arguments, dict):
        raise _fail(f"--args must be a JSON object, got {type(arguments).__name__}")
    with ToolRuntime(RuntimeConfig(timeout_s=timeout, workers=1)) as runtime:
        with runtime.episode(**source.episode_kwargs(env)) as episode:
            typer.echo(episode.call(tool, arguments))


@app.command()
def score(
    file: Path = typer.Argument(..., help="Environment states (JSONL/Parquet) the responses answer."),
    responses: Path = typer.Option(..., help="JSONL with `row` (0-based state index) and `response` (raw model text)."),
    out: Path = typer.Option(..., help="Output JSONL: row, reward, branch and the parsed calls."),
    reward: RewardKind = typer.Option("f1", help="Per-turn reward: f1 (paper default), p, r or pr."),
    matcher: MatcherName = typer.Option(
        "reference", help="Sub-answer matcher: reference (exact reproduction) or strict."
    ),
    fmt: FormatName = typer.Option("hermes", "--format", help="Tool-call format of the responses: hermes or llama31."),
    timeout: float = typer.Option(10.0, min=0.01, max=3600, help="Seconds before a tool call is stopped."),
    overwrite: OverwriteOption = False,
) -> None:
    """Per-turn verifiable reward of raw model responses against environment states."""
    from ftrl.reward import RewardSpec, score_response
    from ftrl.rollout.engine import unicode_fault
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    spec = RewardSpec(kind=reward, matcher=matcher, fmt=fmt)
    refuse_overlap(out, [file, responses])
    source, _ = _load_row(file, 0)
    try:
        requests = read_score_requests(responses, len(source.envs))
    except DataError as error:
        raise _fail(str(error)) from None
    if not requests:
        raise _fail(f"{responses}: no responses to score (an empty file)")
    check_tool_code(source, timeout_s=timeout)
    settings = {"reward": reward, "matcher": matcher, "format": fmt, "timeout": timeout}
    claim = claim_output(
        out, "score", {"states": file, "responses": responses}, settings, folder=False, overwrite=overwrite
    )
    with claim, ToolRuntime(RuntimeConfig(timeout_s=timeout)) as runtime, _progress() as progress:
        task = progress.add_task("scoring", total=len(requests))
        rows: list[dict[str, Any]] = []
        for row, text in requests:
            scored = score_response(text, source.envs[row], runtime, spec)
            result: dict[str, Any] = {"row": row, **scored.to_row()}
            fault = unicode_fault(result, "the response or a tool output")
            rows.append({"row": row, "error": fault} if fault else result)  # one bad row stays one bad row
            progress.advance(task)
        write_jsonl_atomic(out, rows)
    scored_rows = [r for r in rows if "error" not in r]
    mean = sum(r["reward"] for r in scored_rows) / len(scored_rows) if scored_rows else 0.0
    console.print(f"scored {len(scored_rows)} responses, mean reward {mean:.4f} -> {out}")
    for failed in (r for r in rows if "error" in r):
        console.print(f"[yellow]row {failed['row']}: {escape(str(failed['error']))} (recorded in {out})[/]")


def read_score_requests(path: Path, n_rows: int) -> list[tuple[int, str]]:
    """`(row, response)` pairs from a responses file, every line checked before any scoring starts."""
    requests = []
    for line, item in iter_jsonl(path):
        if not isinstance(item.get("response"), str):
            raise DataError(path, line, "response", "missing or not a string")
        row = item.get("row")
        if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < n_rows:
            raise DataError(path, line, "row", f"must be an integer state index in 0..{n_rows - 1}, got {row!r}")
        requests.append((row, item["response"]))
    return requests


def _progress() -> Progress:
    from ftrl.progress import make_progress

    return make_progress(console, transient=True)


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="Environment file or domain folder."),
    row: int | None = typer.Option(None, help="Show only this 0-based row."),
    limit: int = typer.Option(5, help="Rows to show when --row is not given."),
) -> None:
    """A readable view of environments: question, tools (needed or distractor), unsolved set, answer."""
    from ftrl.env.domains import load_source
    from ftrl.env.io import is_parquet, iter_rows, row_to_environment

    wanted = {row} if row is not None else set(range(max(limit, 0)))
    shown: dict[int, Environment] = {}
    try:
        if Path(file).is_file() and not is_parquet(file):
            # a JSONL file streams: only the rows shown are parsed into environments, so memory stays bounded by
            # the longest line whatever the file's size
            total = 0
            for line, raw in iter_rows(file):
                if total in wanted:
                    shown[total] = row_to_environment(raw, file, line)
                total += 1
            if not total:
                raise DataError(file, None, None, "no environments in it (an empty file or folder)")
        else:
            source = load_source(file)
            total = len(source.envs)
            shown = {index: source.envs[index] for index in wanted if 0 <= index < total}
    except DataError as error:
        raise _fail(str(error)) from None
    indices = [row] if row is not None else list(range(min(limit, total)))
    for index in indices:
        if index not in shown:
            raise _fail(f"{file}: row {index} out of range (0..{total - 1})")
        console.print(render_environment(index, shown[index]))
    console.print(f"[dim]{len(indices)} of {total} rows shown[/]")


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
def bench(
    name: str = typer.Argument(
        ..., help="toolhop, taubench, rotbench, mmlu, bbh, gsm8k, math, humaneval, mbpp, drift."
    ),
    model: str = typer.Option(..., help="Model folder, 'embedded', a served model name (with --base-url), or 'gold'."),
    out: Path = typer.Option(..., help="Output folder: results.jsonl, summary.json, summary.md (resumable)."),
    data: Path | None = typer.Option(None, help="Benchmark data file or folder (docs/benchmarks.md)."),
    limit: int | None = typer.Option(None, min=1, help="Only the first K items (per level for rotbench)."),
    enable_thinking: EnableThinkingOption = False,
    trials: int = typer.Option(1, min=1, help="taubench: trials per task (pass^1..pass^k)."),
    user_model: str | None = typer.Option(None, help="taubench: the simulated user's model."),
    base_url: BaseUrlOption = None,
    user_base_url: str | None = typer.Option(None, help="taubench: server for --user-model (default --base-url)."),
    base_model: str | None = typer.Option(None, help="drift: the model before training."),
    rule: str = typer.Option("ftrl", help="rotbench: matching rule, 'ftrl' (paper) or 'rotbench' (original)."),
    max_new_tokens: MaxNewTokensOption = 512,
    max_turns: int | None = typer.Option(
        None,
        help="toolhop, taubench: agent replies per item (default: the "
        "benchmark's protocol, 9 and 30; fewer deviates from it).",
    ),
    batch_size: int = typer.Option(8, min=1, help="Items answered together (multi-turn items play in step)."),
    overwrite: OverwriteOption = False,
) -> None:
    """Run an external benchmark resumably and print its summary table."""
    from rich.markdown import Markdown

    from ftrl.eval.benchmarks import BenchOptions, run_benchmark
    from ftrl.settings import SamplingConfig

    options = BenchOptions(
        model=model,
        out_dir=out,
        server=_server_config(base_url, model, None, concurrency=batch_size),
        sampling=SamplingConfig(max_new_tokens=max_new_tokens, enable_thinking=enable_thinking),
        data=data,
        limit=limit,
        trials=trials,
        user_model=user_model,
        user_server=_server_config(user_base_url or base_url, user_model, None, concurrency=batch_size),
        base_model=base_model,
        rule=rule,
        max_turns=max_turns,
        batch_size=batch_size,
    )
    settings = {
        "benchmark": name,
        "model": describe_model(model),
        "base_url": base_url,
        "trials": trials,
        "user_model": user_model,
        "user_base_url": user_base_url,
        "rule": rule,
        "max_turns": max_turns,
        "max_new_tokens": max_new_tokens,
        "enable_thinking": enable_thinking,
        "base_model": describe_model(base_model) if base_model else None,
    }
    if data is not None and not data.exists():
        raise _fail(f"{data}: no such file or folder")
    try:
        claim = claim_output(
            out,
            f"bench {name}",
            {"data": data},
            settings,
            folder=True,
            overwrite=overwrite,
            reads=_local(model, base_model),
        )
        with claim:
            run_benchmark(name, options)
    except (ValueError, RuntimeError, DataError) as error:
        raise _fail(str(error)) from None
    console.print(Markdown((out / "summary.md").read_text(encoding="utf-8")))


#: Characters of one field `ftrl inspect` shows; the rest is counted, not printed (a 200 MB field would take
#: minutes and gigabytes to lay out).
SHOWN_CHARS = 2000
SHOWN_TOOLS = 50


def _clip(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def render_environment(index: int, env: Environment) -> Panel:
    """A rich panel describing one environment for humans (long fields clipped to `SHOWN_CHARS`)."""
    tools = Table("tool", "params", "role", box=None, pad_edge=False)
    for schema in env.tools[:SHOWN_TOOLS]:
        name = tool_name(schema)
        parameters = schema.get("function", schema).get("parameters", {}).get("properties", {})
        role = "[green]needed[/]" if name in env.unsolved_set else "[dim]distractor[/]"
        tools.add_row(escape(_clip(name, 200)), str(len(parameters)), role if not env.domain else "domain tool")
    if len(env.tools) > SHOWN_TOOLS:
        tools.add_row(f"... {len(env.tools) - SHOWN_TOOLS} more tools", "", "")
    question = _clip(str(env.extra.get("instruction") or env.question))
    pending = _clip(", ".join(f"{tool}: {answers}" for tool, answers in env.unsolved_set.items()) or "-")
    answer = _clip(env.answer or "-")
    body = Group(
        Text.from_markup(f"[bold]question[/] {escape(question)}"),
        Text.from_markup(f"[bold]unsolved[/] {escape(pending)}   [bold]solve rate[/] {env.solve_rate:.2f}"),
        Text.from_markup(f"[bold]answer[/] {escape(answer)}   [bold]turns so far[/] {len(env.messages)}"),
        tools,
    )
    return Panel(body, title=f"row {index} · {env.data_source} · {env.split}", title_align="left")


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@app.command()
def build(
    out: Path = typer.Option(..., help="Output JSONL; an existing partial file from the same config is resumed."),
    backend: str = typer.Option("procedural", help="procedural (offline, default) or llm."),
    n: int = typer.Option(100, "--n", min=1, help="Number of environments to write."),
    scenarios: str = typer.Option(
        "single_hop,parallel_single_hop,multi_hop,parallel_multi_hop", help="Comma-separated."
    ),
    seed: int = typer.Option(0, help="Same seed and options give byte-identical files."),
    split: str = typer.Option("train", help="train or test."),
    domains: str = typer.Option("", help="Comma-separated world domains to use (default: all)."),
    exclude_domains: str = typer.Option("", help="Comma-separated domains to hold out."),
    min_hops: int = typer.Option(2, help="Fewest sub-questions of a multi-hop chain."),
    max_hops: int = typer.Option(9, help="Most sub-questions of a multi-hop chain."),
    min_tools: int = typer.Option(4, help="Fewest tools per environment."),
    max_tools: int = typer.Option(10, help="Most tools per environment; distractors fill up to a drawn count."),
    min_params: int = typer.Option(5, help="Fewest parameters per tool after complexity scaling."),
    max_params: int = typer.Option(9, help="Most parameters per tool after complexity scaling."),
    workers: int = typer.Option(1, min=1, max=256, help="Runtime worker processes for verification."),
    base_url: str | None = typer.Option(None, help="llm backend: OpenAI-compatible endpoint."),
    model: str | None = typer.Option(None, help="llm backend: model name."),
    api_key_file: str | None = typer.Option(None, "--api-key-file", help=f"llm backend: {_API_KEY_HELP}"),
    api_key: ApiKeyOption = None,
    seed_questions: str | None = typer.Option(None, help="llm backend: JSONL of seed questions."),
    concurrency: int = typer.Option(8, min=1, help="llm backend: parallel requests."),
    probe_model: str | None = typer.Option(
        None,
        help="After building, probe every environment with this local model (responses sampled and scored as "
        "`ftrl train --preset cpu` does) and keep those whose pass rate is inside --target-solve-rate.",
    ),
    target_solve_rate: str = typer.Option("0.2:0.8", help="With --probe-model: the pass-rate band kept, LOW:HIGH."),
    probe_n: int = typer.Option(4, min=2, help="With --probe-model: responses sampled per environment."),
    probe_out: Path | None = typer.Option(
        None,
        help="With --probe-model: file of the environments in the band (default: OUT with .probed before its "
        "suffix); every environment with its pass_rate goes to PROBE_OUT.probe.jsonl.",
    ),
    overwrite: OverwriteOption = False,
) -> None:
    """Build verified tool-use environments (every gold trajectory is replayed in the isolated runtime)."""
    from ftrl.construction.config import LLM_REQUEST_LIMITS, BuildConfig, Difficulty
    from ftrl.construction.driver import build_environments

    _refuse_api_key(api_key)
    refuse_overlap(out, [seed_questions])
    try:
        difficulty = Difficulty(
            min_hops=min_hops,
            max_hops=max_hops,
            min_tools=min_tools,
            max_tools=max_tools,
            min_params=min_params,
            max_params=max_params,
        )
        config = BuildConfig(
            backend=backend,
            n=n,
            scenarios=_csv(scenarios),
            seed=seed,
            split=split,
            domains=_csv(domains) or None,
            exclude_domains=_csv(exclude_domains),
            difficulty=difficulty,
            workers=workers,
            server=_server_config(base_url, model, api_key_file, concurrency=concurrency, **LLM_REQUEST_LIMITS),
            seed_questions=seed_questions,
        )
        with _progress() as progress:
            task = progress.add_task("building", total=n)
            report = build_environments(
                config, out, lambda done, total: progress.update(task, completed=done), overwrite=overwrite
            )
    except ValueError as error:
        raise _fail(str(error)) from None
    console.print(
        f"wrote {report.written} environments to {out} ({report.resumed} kept from before) "
        f"in {report.seconds:.1f} s ({report.envs_per_s:.0f}/s); "
        f"{report.rejected} rejected {report.rejection_stages or ''}"
    )
    if report.total < n:
        console.print(
            f"[bold red]error:[/] only {report.total} of {n} environments were built "
            f"(see {out}.rejections.jsonl for why the others were rejected)"
        )
        raise typer.Exit(code=1)
    if probe_model is not None:
        _probe_built(out, probe_model, target_solve_rate, probe_n, probe_out)


def _probe_built(out: Path, model: str, band_text: str, n: int, probe_out: Path | None) -> None:
    """`ftrl build --probe-model`: the curriculum's probe and filter on a finished build, for training elsewhere."""
    from ftrl.models import ModelNotFound, resolve_model
    from ftrl.recipes.curriculum import parse_band, policy_pass_rates, probe_file

    try:
        band = parse_band(band_text)
        resolve_model(model)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    target = probe_out or out.with_name(f"{out.stem}.probed{out.suffix}")
    result = probe_file(out, target, policy_pass_rates(model, make_config("cpu"), n), band, n)
    report = result.report()
    bins = " ".join(f"{name}: {count}" for name, count in report["histogram"].items())
    console.print(
        f"probed {report['probed']} environments with {model} ({n} responses each): mean pass rate "
        f"{report['pass_rate_mean']}; histogram {bins}; by scenario {report['pass_rate_by_scenario']}"
    )
    console.print(
        f"wrote {report['kept']} in the band {band_text} to {target} (all with pass_rate: {target}.probe.jsonl)"
    )


@app.command()
def stats(
    file: Path = typer.Argument(..., help="Environment file (JSONL/Parquet)."),
    plot: Path | None = typer.Option(None, help="Also save a figure (PNG) here."),
) -> None:
    """Per-scenario statistics of an environment file (and its build's rejection reasons)."""
    from ftrl.construction.stats import plot_stats, stats_for_path
    from ftrl.env.domains import load_source

    if plot is not None:
        refuse_overlap(plot, [file], option="--plot")
    try:
        load_source(file)  # every row checked, and an empty file is an error
        result = stats_for_path(file)
    except (DataError, OSError) as error:
        raise _fail(str(error)) from None
    rows = result.as_rows()
    table = Table(title=str(file))
    table.add_column("metric", no_wrap=True)
    for row in rows:
        table.add_column(row["scenario"].replace("parallel_", "par. "), justify="right")
    for key in rows[0]:
        if key != "scenario":
            table.add_row(key, *(f"{row[key]:.2f}" if isinstance(row[key], float) else str(row[key]) for row in rows))
    console.print(table)
    if result.rejections:
        rejected = Table("count", "stage: reason", title="rejections")
        for reason, count in result.rejections.items():
            rejected.add_row(str(count), escape(reason))
        console.print(rejected)
    if plot is not None:
        plot_stats(result, plot)
        console.print(f"figure written to {plot}")


def _server_config(
    base_url: str | None, model: str | None, api_key_file: str | None, **limits: Any
) -> ServerConfig | None:
    """The model server the flags name, for every command that talks to one (None without --base-url and a model).

    `limits` are the command's own `ServerConfig` fields (concurrency, timeouts); the key is read from
    --api-key-file, else `$OPENAI_API_KEY`, when a request is sent (`ServerConfig.resolve_api_key`).
    """
    from ftrl.settings import ServerConfig

    if not base_url or not model:
        return None
    return ServerConfig(base_url=base_url, model=model, api_key_file=api_key_file, **limits)


def _refuse_api_key(api_key: str | None) -> None:
    if api_key is not None:
        raise _fail(API_KEY_REFUSED)


def _load_envs_checked(envs: Path, limit: int | None) -> None:
    """Fail on unreadable, empty or broken-code environments before any model loads."""
    from ftrl.env.domains import load_source

    try:
        source = load_source(envs)
    except DataError as error:
        raise _fail(str(error)) from None
    check_tool_code(source, limit)


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
    """What `sample` and `eval` check before a policy runs (no key on the command line, an output apart from the
    inputs, valid rows and tool code), then the claim on the output that holds while it runs."""
    _refuse_api_key(config.api_key)
    envs, out = Path(config.envs), Path(config.out)
    refuse_overlap(out, [envs, *_local(config.model)])
    _load_envs_checked(envs, config.limit)
    settings = config.results_settings()
    return claim_output(
        out, job, {"envs": envs}, settings, folder=folder, overwrite=overwrite, reads=_local(config.model)
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
    from ftrl.eval.paired import DIFFERENCE_LEGEND
    from ftrl.eval.report import comparison_legend, load_runs
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(
        to_markdown(rows, "RL - warm start per seed and pooled (Solve-F1 x100)"), encoding="utf-8"
    )
    (out / "pooled.json").write_text(json.dumps([d.to_dict() for d in [*per_seed, pooled]], indent=2))
    console.print(to_rich(rows, "RL - warm start per seed and pooled (Solve-F1 x100)"))
    console.print(f"wrote {out / 'report.md'} and {out / 'pooled.json'}")


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


def _viewer(wanted: bool, out: str | Path) -> None:
    """The run viewer every run-producing command writes into its output (`--no-viewer` skips it)."""
    if wanted:
        from ftrl.viewer import view_output

        view_output(out, console)


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
