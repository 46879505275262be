"""The `ftrl` command line: a thin Typer layer over the library; each command parses options and calls one function."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ftrl.cli_config import ConfigArgs, apply_config, config_options
from ftrl.demo import DemoConfig
from ftrl.env.record import Environment, tool_name
from ftrl.jsonl import DataError, iter_jsonl, write_jsonl_atomic
from ftrl.provenance import claim_output, describe_model
from ftrl.train.config import SFTConfig, TrainConfig, make_config
from ftrl.train.loop import LoopConfig

if TYPE_CHECKING:
    from ftrl.env.domains import EnvSource
    from ftrl.rollout import PolicySpec
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

#: Config fields whose flag is not derived from their name (`ftrl.cli_config`): names users already type.
FLAG_NAMES = {"max_new_tokens_train": "--train-max-new-tokens"}


def check_tool_code(source: EnvSource, count: int | None = None, timeout_s: float = 10.0) -> None:
    """Refuse environments whose tool code cannot run, before a model starts: every call to such a tool would error
    and the run would score it 0 without saying why. The code is untrusted, so it compiles and loads only in the
    isolated runtime (each distinct code once, all in one batch over the workers), as a call with a `timeout_s`
    limit would load it; every broken row is listed."""
    from ftrl.env.validate import load_failures
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    envs = source.envs[:count]
    distinct = len({code for env in envs for code in env.codes.values()})
    if not distinct:
        return
    workers = min(os.cpu_count() or 1, distinct)
    with ToolRuntime(RuntimeConfig(timeout_s=timeout_s, workers=workers)) as runtime:
        failures = load_failures(envs, runtime.check_many)
    if failures:
        rows = len({failure.row for failure in failures})
        listed = "\n".join(f"  row {f.row}, field 'codes', tool {f.tool!r}: {f.error}" for f in failures)
        raise _fail(
            f"{source.path}: {rows} environment(s) with tool code that cannot run (every call to it would fail):\n"
            f"{listed}\nFix or drop these rows (`ftrl validate {source.path}` lists every problem)"
        )


# Options shared by the commands that run a policy (`sample`, `eval`, and in part `bench` and `analyze sweep`), each
# defined once; a command gives the default as its parameter default where the commands differ (temperature).
_MODEL_HELP = (
    "Model folder, cached hub id, 'embedded', 'oracle' (replays gold calls), or a served model name with --base-url."
)
ModelOption = Annotated[str, typer.Option(help=_MODEL_HELP)]
EnvsOption = Annotated[Path, typer.Option(help="Environments (JSONL/Parquet file or domain folder).")]
LimitOption = Annotated[int | None, typer.Option(min=1, help="Only the first K environments.")]
MaxTurnsOption = Annotated[int, typer.Option(min=1, help="Assistant turns per episode.")]
TemperatureOption = Annotated[
    float, typer.Option(min=0.0, max=100.0, help="Sampling temperature (0 = greedy; the paper evaluates greedily).")
]
MaxNewTokensOption = Annotated[int, typer.Option(min=1, help="Tokens per assistant turn.")]
BatchSizeOption = Annotated[
    int, typer.Option(min=1, help="Episodes in flight (rows per generate call / concurrent requests).")
]
ServerTimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=1.0,
        max=86400.0,
        help="Seconds one model-server request may take in all, retries included (--base-url only).",
    ),
]
BaseUrlOption = Annotated[str | None, typer.Option(help="OpenAI-compatible server (…/v1) serving --model.")]
_API_KEY_HELP = "API key for --base-url (default $OPENAI_API_KEY)."
ApiKeyOption = Annotated[str | None, typer.Option(help=_API_KEY_HELP)]
EnableThinkingOption = Annotated[bool, typer.Option("--enable-thinking", help="Let reasoning models think.")]
PromptOption = Annotated[str, typer.Option(help="Tool prompt variant for templates without tool support.")]
ThreadsOption = Annotated[int | None, typer.Option(min=1, help="Torch CPU threads for local models.")]
DeviceOption = Annotated[str, typer.Option(help="Local models: auto (CUDA when present), cpu or cuda.")]
EngineOption = Annotated[
    str,
    typer.Option(
        help="Local models: kvgen (fp32, ftrl's continuous batching), int8 (kvgen over int8 per-channel weights: "
        "faster on a CPU, a slightly different model), hf (transformers' generate) or auto (kvgen when it supports "
        "the model)."
    ),
]
DtypeOption = Annotated[
    str, typer.Option(help="Local models: auto (bf16 for generation on CUDA, else fp32), fp32, bf16, fp16.")
]


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
    from ftrl.analysis import CheckpointError, analyze_params

    try:
        report = analyze_params(base, tuned, out)
    except CheckpointError as error:
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
    from ftrl.analysis import CheckpointError, SpecError, restore

    spec = keep if keep is not None else revert
    if spec is None or (keep is not None and revert is not None):
        raise _fail("give exactly one of --keep SPEC or --revert SPEC")
    try:
        result = restore(base, tuned, spec, out, revert=revert is not None)
    except (CheckpointError, SpecError) as error:
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
    reward: str = typer.Option("f1", help="Per-turn reward: f1 (paper default), p, r or pr."),
    matcher: str = typer.Option("reference", help="Sub-answer matcher: reference (exact reproduction) or strict."),
    fmt: str = typer.Option("hermes", "--format", help="Tool-call format of the responses: hermes or llama31."),
    timeout: float = typer.Option(10.0, min=0.01, max=3600, help="Seconds before a tool call is stopped."),
    overwrite: OverwriteOption = False,
) -> None:
    """Per-turn verifiable reward of raw model responses against environment states."""
    from ftrl.reward import REWARD_KINDS, score_response
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    if reward not in REWARD_KINDS:
        raise _fail(f"--reward must be one of {', '.join(REWARD_KINDS)}, got {reward!r}")
    if matcher not in ("reference", "strict"):
        raise _fail(f"--matcher must be reference or strict, got {matcher!r}")
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
        rows = []
        for row, text in requests:
            env = source.envs[row]
            scored = score_response(
                text,
                codes=env.codes,
                unsolved_set=env.unsolved_set,
                solve_rate=env.solve_rate,
                answer=env.answer or None,
                runtime=runtime,
                kind=reward,
                fmt=fmt,
                matcher=matcher,
            )
            rows.append({"row": row, **scored.to_row()})
            progress.advance(task)
        write_jsonl_atomic(out, rows)
    mean = sum(r["reward"] for r in rows) / len(rows) if rows else 0.0
    console.print(f"scored {len(rows)} responses, mean reward {mean:.4f} -> {out}")


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
    return Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console, transient=True)


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="Environment file or domain folder."),
    row: int | None = typer.Option(None, help="Show only this 0-based row."),
    limit: int = typer.Option(5, help="Rows to show when --row is not given."),
) -> None:
    """A readable view of environments: question, tools (needed or distractor), unsolved set, answer."""
    from ftrl.env.domains import load_source

    try:
        source = load_source(file)
    except DataError as error:
        raise _fail(str(error)) from None
    indices = [row] if row is not None else list(range(min(limit, len(source.envs))))
    for index in indices:
        if not 0 <= index < len(source.envs):
            raise _fail(f"{file}: row {index} out of range (0..{len(source.envs) - 1})")
        console.print(render_environment(index, source.envs[index]))
    console.print(f"[dim]{len(indices)} of {len(source.envs)} rows shown[/]")


@app.command()
@config_options(TrainConfig, defaults=make_config("cpu"), required=("data", "out"), flag_names=FLAG_NAMES)
def train(
    preset: str = typer.Option(
        "cpu",
        help="The defaults: paper (the reference verl settings) or cpu (small model, 2 cores; the defaults shown). "
        "A --config file, then the flags given, apply on top.",
    ),
    overwrite: OverwriteOption = False,
    *,
    config_args: ConfigArgs,
) -> None:
    """RL on trajectory states with the per-turn verifiable reward; resumes from DIR/checkpoints when present."""
    from dataclasses import asdict

    from ftrl.env.domains import load_source
    from ftrl.rollout.models import ModelNotFound, placement, resolve_model
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
    # what decides the weights; run length, checkpointing and memory knobs may change on a resume
    ignored = ("out", "data", "steps", "save_every", "keep_checkpoints", "micro_batch_size", "tool_workers")
    settings = {**{k: v for k, v in asdict(config).items() if k not in ignored}, "model": describe_model(config.model)}
    try:
        with claim_output(config.out, "train", {"data": config.data}, settings, folder=True, overwrite=overwrite):
            saved = run_training(config, console=console)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    console.print(f"[green]saved[/] {saved}")


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run directories holding metrics.jsonl."),
    out: Path = typer.Option(Path("training.png"), help="PNG to write."),
) -> None:
    """Training curves (reward, tool-call rate, KL, entropy, length, clipping) of one or more runs."""
    from ftrl.train.plot import plot_runs

    console.print(f"[green]wrote[/] {plot_runs(runs, out)}")


@app.command()
@config_options(SFTConfig, required=("envs", "out"), flag_names=FLAG_NAMES)
def sft(overwrite: OverwriteOption = False, *, config_args: ConfigArgs) -> None:
    """Supervised warm start on gold tool-call trajectories (loss on assistant tokens only)."""
    from ftrl.rollout.models import ModelNotFound
    from ftrl.train.sft import sft as run_sft

    config = config_args.load(SFTConfig())
    _load_envs_checked(Path(config.envs), None)  # before the model loads
    settings = {**config.to_dict(), "model": describe_model(config.model), "envs": None, "out": None}
    try:
        with claim_output(config.out, "sft", {"envs": config.envs}, settings, folder=True, overwrite=overwrite):
            saved = run_sft(config, console=console)
    except (ValueError, ModelNotFound) as error:
        raise _fail(str(error)) from None
    console.print(f"[green]saved[/] {saved}")


@app.command()
@config_options(LoopConfig, required=("envs", "eval_envs", "out"), flag_names=FLAG_NAMES)
def loop(overwrite: OverwriteOption = False, *, config_args: ConfigArgs) -> None:
    """The iterative recipe: per round collect states with the current policy, train on them, evaluate."""
    from dataclasses import asdict

    from ftrl.train.loop import run_loop

    config = config_args.load(LoopConfig())
    inputs = {"envs": config.envs, "eval_envs": config.eval_envs, "warm_start_envs": config.warm_start_envs}
    for path in filter(None, inputs.values()):
        _load_envs_checked(Path(path), None)  # before the first model loads
    # more rounds extend a loop; everything else decides what the rounds already done produced
    settings = {
        **asdict(config),
        "model": describe_model(config.model),
        "out": None,
        "rounds": None,
        "save_every": None,
        "envs": None,
        "eval_envs": None,
        "warm_start_envs": None,
    }
    with claim_output(config.out, "loop", inputs, settings, folder=True, overwrite=overwrite):
        run_loop(config, console=console)


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
    reward: str = typer.Option("f1", help="Per-turn reward: f1, p, r or pr."),
    matcher: str = typer.Option("reference", help="Sub-answer matcher: reference or strict."),
    multi_turn: bool = typer.Option(
        False,
        help="Also write episodes.parquet, ftrl_agent_loop.yaml and "
        "train_multiturn_grpo.sh for verl's tool agent loop (whole episodes).",
    ),
    overwrite: OverwriteOption = False,
) -> None:
    """States as a verl 0.9.1 dataset with a reward module calling ftrl and the paper's launch scripts."""
    from ftrl.export import export_verl
    from ftrl.rollout import ModelNotFound

    _load_envs_checked(data, None)
    settings = {"model": describe_model(model), "reward": reward, "matcher": matcher, "multi_turn": multi_turn}
    try:
        with claim_output(out, "export verl", {"data": data}, settings, folder=True, overwrite=overwrite):
            written = export_verl(data, out, model=model, reward=reward, matcher=matcher, multi_turn=multi_turn)
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
        with claim_output(out, f"bench {name}", {"data": data}, settings, folder=True, overwrite=overwrite):
            run_benchmark(name, options)
    except (ValueError, RuntimeError, DataError) as error:
        raise _fail(str(error)) from None
    console.print(Markdown((out / "summary.md").read_text(encoding="utf-8")))


def render_environment(index: int, env: Environment) -> Panel:
    """A rich panel describing one environment for humans."""
    tools = Table("tool", "params", "role", box=None, pad_edge=False)
    for schema in env.tools:
        name = tool_name(schema)
        parameters = schema.get("function", schema).get("parameters", {}).get("properties", {})
        role = "[green]needed[/]" if name in env.unsolved_set else "[dim]distractor[/]"
        tools.add_row(name, str(len(parameters)), role if not env.domain else "domain tool")
    question = env.extra.get("instruction") or env.question
    pending = ", ".join(f"{tool}: {answers}" for tool, answers in env.unsolved_set.items()) or "-"
    body = Group(
        Text.from_markup(f"[bold]question[/] {escape(question)}"),
        Text.from_markup(f"[bold]unsolved[/] {escape(pending)}   [bold]solve rate[/] {env.solve_rate:.2f}"),
        Text.from_markup(f"[bold]answer[/] {escape(env.answer or '-')}   [bold]turns so far[/] {len(env.messages)}"),
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
    api_key: str | None = typer.Option(None, help=f"llm backend: {_API_KEY_HELP}"),
    seed_questions: str | None = typer.Option(None, help="llm backend: JSONL of seed questions."),
    concurrency: int = typer.Option(8, min=1, help="llm backend: parallel requests."),
    overwrite: OverwriteOption = False,
) -> None:
    """Build verified tool-use environments (every gold trajectory is replayed in the isolated runtime)."""
    from ftrl.construction.config import LLM_REQUEST_LIMITS, BuildConfig, Difficulty
    from ftrl.construction.driver import build_environments

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
            server=_server_config(base_url, model, api_key, concurrency=concurrency, **LLM_REQUEST_LIMITS),
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


@app.command()
def stats(
    file: Path = typer.Argument(..., help="Environment file (JSONL/Parquet)."),
    plot: Path | None = typer.Option(None, help="Also save a figure (PNG) here."),
) -> None:
    """Per-scenario statistics of an environment file (and its build's rejection reasons)."""
    from ftrl.construction.stats import plot_stats, stats_for_path
    from ftrl.env.domains import load_source

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


def _server_config(base_url: str | None, model: str | None, api_key: str | None, **limits: Any) -> ServerConfig | None:
    """The model server the flags name, for every command that talks to one (None without --base-url and a model).

    `limits` are the command's own `ServerConfig` fields (concurrency, timeouts); the key is --api-key, else
    `$OPENAI_API_KEY` when a request is sent (`ServerConfig.resolve_api_key`).
    """
    from ftrl.settings import ServerConfig

    if not base_url or not model:
        return None
    return ServerConfig(base_url=base_url, model=model, api_key=api_key, **limits)


def _policy_spec(
    *,
    model: str,
    base_url: str | None,
    api_key: str | None,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    enable_thinking: bool,
    prompt: str,
    threads: int | None,
    device: str,
    dtype: str,
    timeout: float,
    engine: str = "auto",
) -> PolicySpec:
    """The policy `sample` and `eval` run: a server's requests get `timeout` in all, at most 120 s an attempt."""
    from ftrl.rollout import PolicySpec
    from ftrl.settings import SamplingConfig

    server = _server_config(
        base_url,
        model,
        api_key,
        concurrency=batch_size,
        timeout_s=min(120.0, timeout),
        total_timeout_s=timeout,
    )
    return PolicySpec(
        model=model,
        server=server,
        sampling=SamplingConfig(
            temperature=temperature, max_new_tokens=max_new_tokens, enable_thinking=enable_thinking
        ),
        batch_size=batch_size,
        prompt=prompt,
        threads=threads,
        device=device,
        dtype=dtype,
        engine=engine,
    )


def _run_settings(spec: PolicySpec, **more: Any) -> dict[str, Any]:
    """The settings of a rollout job that change its results (batch size, threads and the API key do not)."""
    return {
        "model": describe_model(spec.model),
        "base_url": spec.server.base_url if spec.server else None,
        "temperature": spec.sampling.temperature,
        "max_new_tokens": spec.sampling.max_new_tokens,
        "enable_thinking": spec.sampling.enable_thinking,
        "prompt": spec.prompt,
        "device": spec.device,
        "dtype": spec.dtype,
        "engine": spec.engine,
        **more,
    }


def _load_envs_checked(envs: Path, limit: int | None) -> None:
    """Fail on unreadable, empty or broken-code environments before any model loads."""
    from ftrl.env.domains import load_source

    try:
        source = load_source(envs)
    except DataError as error:
        raise _fail(str(error)) from None
    check_tool_code(source, limit)


@app.command("sample")
def sample_command(
    model: ModelOption,
    envs: EnvsOption,
    out: Annotated[Path, typer.Option(help="States file to write (JSONL, reference format; resumable).")],
    n_per_env: Annotated[int, typer.Option(min=1, help="Episodes sampled per environment.")] = 1,
    temperature: TemperatureOption = 1.0,
    max_turns: MaxTurnsOption = 20,
    limit: LimitOption = None,
    max_new_tokens: MaxNewTokensOption = 512,
    batch_size: BatchSizeOption = 16,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    enable_thinking: EnableThinkingOption = False,
    prompt: PromptOption = "example",
    threads: ThreadsOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    engine: EngineOption = "auto",
    timeout: ServerTimeoutOption = 300.0,
    overwrite: OverwriteOption = False,
) -> None:
    """Collect training states (history, remaining sub-answers, solve rate) from sampled rollouts."""
    from ftrl.rollout import ModelNotFound, collect

    spec = _policy_spec(
        model=model,
        base_url=base_url,
        api_key=api_key,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        enable_thinking=enable_thinking,
        prompt=prompt,
        threads=threads,
        device=device,
        dtype=dtype,
        timeout=timeout,
        engine=engine,
    )
    _load_envs_checked(envs, limit)
    settings = _run_settings(spec, n_per_env=n_per_env, max_turns=max_turns)
    try:
        with claim_output(out, "sample", {"envs": envs}, settings, folder=False, overwrite=overwrite):
            collect(spec, envs, out, n_per_env=n_per_env, max_turns=max_turns, limit=limit, console=console)
    except (DataError, ModelNotFound, ValueError) as error:
        raise _fail(str(error)) from None


@app.command("eval")
def eval_command(
    model: ModelOption,
    envs: EnvsOption,
    out: Annotated[Path, typer.Option(help="Output folder: episodes.jsonl (resumable), summary.json, summary.md.")],
    limit: LimitOption = None,
    max_turns: MaxTurnsOption = 20,
    temperature: TemperatureOption = 0.0,
    max_new_tokens: MaxNewTokensOption = 512,
    batch_size: BatchSizeOption = 16,
    base_url: BaseUrlOption = None,
    api_key: ApiKeyOption = None,
    enable_thinking: EnableThinkingOption = False,
    prompt: PromptOption = "example",
    threads: ThreadsOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    engine: EngineOption = "auto",
    timeout: ServerTimeoutOption = 300.0,
    overwrite: OverwriteOption = False,
) -> None:
    """Evaluate a model: Solve-P/R/F1 per scenario and their mean, answer accuracy, call errors, turns."""
    from ftrl.eval import evaluate
    from ftrl.rollout import ModelNotFound

    spec = _policy_spec(
        model=model,
        base_url=base_url,
        api_key=api_key,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        enable_thinking=enable_thinking,
        prompt=prompt,
        threads=threads,
        device=device,
        dtype=dtype,
        timeout=timeout,
        engine=engine,
    )
    _load_envs_checked(envs, limit)
    settings = _run_settings(spec, max_turns=max_turns)
    try:
        with claim_output(out, "eval", {"envs": envs}, settings, folder=True, overwrite=overwrite):
            evaluate(spec, envs, out, limit=limit, max_turns=max_turns, console=console)
    except (DataError, ModelNotFound, ValueError) as error:
        raise _fail(str(error)) from None


@app.command("report")
def report_command(
    runs: list[Path] = typer.Argument(..., help="Evaluation folders (each with summary.json)."),
    out: Path = typer.Option(Path("report"), help="Folder for report.md and report.png."),
) -> None:
    """Compare evaluation runs side by side (e.g. base vs trained): a table and a bar chart per scenario."""
    from ftrl.eval import report
    from ftrl.eval.summary import to_rich

    try:
        rows, differences = report(runs, out)
    except (OSError, KeyError, ValueError) as error:
        raise _fail(f"cannot read the runs: {error}") from None
    console.print(to_rich(rows, "Runs side by side"))
    if differences:
        console.print(to_rich(differences, "Paired differences of mean Solve-F1 (x100)"))
    console.print(f"wrote {out / 'report.md'} and {out / 'report.png'}")


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
    *,
    config_args: ConfigArgs,
) -> None:
    """The whole loop on one machine: build, evaluate, warm-start, RL-train, evaluate again, report. Resumable."""
    from ftrl.demo import run_demo

    try:
        values = config_args.values()
        config = apply_config(DemoConfig.profile("quick" if quick else profile), values)
    except ValueError as error:
        raise _fail(str(error)) from None
    if config.seed and "out" not in values:
        config.out += f"-seed{config.seed}"
    run_demo(config, console)
