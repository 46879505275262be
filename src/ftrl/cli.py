"""The `ftrl` command line: a thin Typer layer over the library; each command parses options and calls one function."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ftrl.env.record import Environment, tool_name
from ftrl.jsonl import DataError

if TYPE_CHECKING:
    from ftrl.env.domains import EnvSource

app = typer.Typer(help="Feedback-driven tool-use RL in automatically built, verifiable environments.", no_args_is_help=True)
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Environment files (JSONL/Parquet) or domain folders."),
    run_code: bool = typer.Option(True, help="Also load every tool's code in the isolated runtime."),
    show_ok: bool = typer.Option(False, help="List valid rows too, not only invalid ones."),
) -> None:
    """Load, validate and compile every environment; exit 1 if any row is invalid."""
    from ftrl.env.validate import validate_path
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    table = Table("file", "row", "line", "scenario", "status", "problems")
    invalid = total = 0
    with ToolRuntime(RuntimeConfig()) as runtime:
        for path in files:
            try:
                reports = validate_path(path, runtime.check if run_code else None)
            except DataError as error:
                raise _fail(str(error)) from None
            for report in reports:
                total += 1
                invalid += not report.ok
                if report.ok and not show_ok:
                    continue
                scenario = report.env.scenario if report.env else "-"
                status = "[green]ok[/]" if report.ok else "[red]invalid[/]"
                problems = "\n".join(str(issue) for issue in report.issues)
                table.add_row(str(path), str(report.row), str(report.line or "-"), scenario, status, problems)
    if table.row_count:
        console.print(table)
    colour = "red" if invalid else "green"
    console.print(f"[{colour}]{total - invalid}/{total} rows valid[/]")
    if invalid:
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
    timeout: float = typer.Option(10.0, help="Seconds before the call is stopped."),
) -> None:
    """Run one tool call in that environment (isolated) and print the tool message content."""
    from ftrl.runtime import RuntimeConfig, ToolRuntime

    source, env = _load_row(file, row)
    with ToolRuntime(RuntimeConfig(timeout_s=timeout, workers=1)) as runtime:
        with runtime.episode(**source.episode_kwargs(env)) as episode:
            typer.echo(episode.call(tool, args))


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
