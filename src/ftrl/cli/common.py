"""What every `ftrl` command shares: the app and its no-traceback net, the console, errors, option types and the
checks run before a job."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ftrl.jsonl import DataError

if TYPE_CHECKING:
    from ftrl.env.domains import EnvSource

console = Console()


class _SafeGroup(TyperGroup):
    """Every fault a user can cause (bad files, options, data, server failures) ends as one message and a non-zero
    exit, never a traceback; commands raise specific messages, this is the net under them. `FTRL_DEBUG=1` lets the
    traceback through for bug reports."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """The command `args` name; one that may run torch first gets its thread settings (`ftrl.threads`), which
        watch the CPUs for a quarter of a second: the other commands and every `--help` start without it."""
        name, command, rest = super().resolve_command(ctx, args)
        if _runs_torch(name, rest):
            from ftrl.threads import configure_threads

            configure_threads()  # before the command imports torch
        return name, command, rest

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors and exits: Typer reports them itself
            raise
        except Exception as error:  # noqa: BLE001 - the last line of defence of a command-line tool
            if os.environ.get("FTRL_DEBUG"):
                raise
            raise _fail(describe_error(error)) from None


#: Commands that may load a model with torch (`build` only to probe what it built).
TORCH_COMMANDS = frozenset({"train", "sft", "loop", "demo", "eval", "sample", "bench", "analyze", "export"})


def _runs_torch(name: str | None, args: list[str]) -> bool:
    if {"--help", "-h"} & set(args):
        return False
    if name == "build":
        return any(arg.split("=")[0] in ("--probe-model", "--config") for arg in args)
    return name in TORCH_COMMANDS


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
    # `ftrl train`: the reward kind was the field `reward` before the reward spec became the table [reward]
    "reward.kind": "--reward",
    "train.reward.kind": "--reward",
    # `ftrl loop`: the flags its fields had before they moved into the nested train and warm-start configs
    "train.max_new_tokens": "--train-max-new-tokens",
    "train.lora": "--lora",
    "warm_start.envs": "--warm-start-envs",
    "warm_start.epochs": "--warm-start-epochs",
    "warm_start.lr": "--warm-start-lr",
}


#: The flags of a `RewardSpec` where a command takes one whole (`score`, `export verl`): the names they always had.
REWARD_FLAGS = {"kind": "--reward", "fmt": "--format"}


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


# Options of `analyze sweep`, which evaluates like `ftrl eval` (whose flags derive from
# `ftrl.rollout.load.PolicyOptions`).
LimitOption = Annotated[int | None, typer.Option(min=1, help="Only the first K environments.")]
MaxTurnsOption = Annotated[int, typer.Option(min=1, help="Assistant turns per episode.")]
BatchSizeOption = Annotated[
    int, typer.Option(min=1, help="Episodes in flight (rows per generate call / concurrent requests).")
]
#: `--api-key KEY` is refused: a command line is readable by every process of the host (`/proc/<pid>/cmdline`),
#: generated tool code included, which could return the key into tool messages, requests and written data.
API_KEY_REFUSED = (
    "--api-key is refused: a key on the command line is readable by every process of this host in "
    "/proc/<pid>/cmdline (tool code included); put it in $OPENAI_API_KEY or in a file given as --api-key-file"
)


def _refuse_api_key(api_key: str | None) -> None:
    if api_key is not None:
        raise _fail(API_KEY_REFUSED)


def _load_envs_checked(envs: Path, limit: int | None, timeout_s: float = 10.0) -> None:
    """Fail on unreadable, empty or broken-code environments before any model loads."""
    from ftrl.env.domains import load_source

    try:
        source = load_source(envs)
    except DataError as error:
        raise _fail(str(error)) from None
    check_tool_code(source, limit, timeout_s)


def claim_job(
    job: str,
    out: str | Path,
    inputs: Mapping[str, str | Path | None],
    settings: Mapping[str, Any],
    *,
    model: str,
    folder: bool,
    overwrite: bool,
    limit: int | None = None,
    tool_timeout_s: float = 10.0,
) -> AbstractContextManager[None]:
    """What every job that reads environments and a model checks before the model loads, then its claim on the
    output (`claim_output`, held while the job runs): an output apart from the inputs, checked first so that a
    wrong --out is refused before anything is read, then readable rows with working tool code."""
    from ftrl.provenance import claim_output, refuse_overlap

    refuse_overlap(out, [*inputs.values(), *_local(model)])
    for path in inputs.values():
        if path:
            _load_envs_checked(Path(path), limit, tool_timeout_s)
    return claim_output(out, job, inputs, settings, folder=folder, overwrite=overwrite, reads=_local(model))


def _viewer(wanted: bool, out: str | Path) -> None:
    """The run viewer every run-producing command writes into its output (`--no-viewer` skips it)."""
    if wanted:
        from ftrl.viewer import view_output

        view_output(out, console)
