"""Commands on environment files: validate, call, score, inspect, build, stats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from ftrl.cli.common import (
    REWARD_FLAGS,
    OverwriteOption,
    _fail,
    _refuse_api_key,
    app,
    check_tool_code,
    console,
)
from ftrl.cli_config import ConfigArgs, config_options
from ftrl.construction.config import BuildOptions
from ftrl.env.record import Environment, tool_name
from ftrl.jsonl import DataError, write_jsonl_atomic
from ftrl.provenance import claim_output, refuse_overlap
from ftrl.reward.spec import RewardSpec
from ftrl.train.config import make_config

if TYPE_CHECKING:
    from ftrl.env.domains import EnvSource


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
@config_options(RewardSpec, flag_names=REWARD_FLAGS)
def score(
    file: Path = typer.Argument(..., help="Environment states (JSONL/Parquet) the responses answer."),
    responses: Path = typer.Option(..., help="JSONL with `row` (0-based state index) and `response` (raw model text)."),
    out: Path = typer.Option(..., help="Output JSONL: row, reward, branch and the parsed calls."),
    timeout: float = typer.Option(10.0, min=0.01, max=3600, help="Seconds before a tool call is stopped."),
    overwrite: OverwriteOption = False,
    *,
    config_args: ConfigArgs,
) -> None:
    """Per-turn verifiable reward of raw model responses against environment states."""
    from ftrl.eval.responses import read_score_requests, score_responses

    spec = config_args.load(RewardSpec())
    refuse_overlap(out, [file, responses])
    source, _ = _load_row(file, 0)
    try:
        requests = read_score_requests(responses, len(source.envs))
    except DataError as error:
        raise _fail(str(error)) from None
    if not requests:
        raise _fail(f"{responses}: no responses to score (an empty file)")
    check_tool_code(source, timeout_s=timeout)
    settings = {"reward": spec.kind, "matcher": spec.matcher, "format": spec.fmt, "timeout": timeout}
    claim = claim_output(
        out, "score", {"states": file, "responses": responses}, settings, folder=False, overwrite=overwrite
    )
    with claim, _progress() as progress:
        task = progress.add_task("scoring", total=len(requests))
        rows = score_responses(source.envs, requests, spec, timeout, lambda: progress.advance(task))
        write_jsonl_atomic(out, rows)
    scored_rows = [r for r in rows if "error" not in r]
    mean = sum(r["reward"] for r in scored_rows) / len(scored_rows) if scored_rows else 0.0
    console.print(f"scored {len(scored_rows)} responses, mean reward {mean:.4f} -> {out}")
    for failed in (r for r in rows if "error" in r):
        console.print(f"[yellow]row {failed['row']}: {escape(str(failed['error']))} (recorded in {out})[/]")


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


@app.command()
@config_options(BuildOptions, required=("out",))
def build(overwrite: OverwriteOption = False, *, config_args: ConfigArgs) -> None:
    """Build verified tool-use environments (every gold trajectory is replayed in the isolated runtime)."""
    from ftrl.construction.driver import build_environments

    options = config_args.load(BuildOptions())
    _refuse_api_key(options.server.api_key)
    out = Path(options.out)
    refuse_overlap(out, [options.seed_questions])
    try:
        config = options.build_config()
        with _progress() as progress:
            task = progress.add_task("building", total=config.n)
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
    if report.total < config.n:
        console.print(
            f"[bold red]error:[/] only {report.total} of {config.n} environments were built "
            f"(see {out}.rejections.jsonl for why the others were rejected)"
        )
        raise typer.Exit(code=1)
    if options.probe_model is not None:
        probe_out = Path(options.probe_out) if options.probe_out else None
        _probe_built(out, options.probe_model, options.target_solve_rate, options.probe_n, probe_out)


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
