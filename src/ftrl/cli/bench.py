"""`ftrl bench`: external benchmarks scored the paper's way."""

from __future__ import annotations

import typer

from ftrl.cli.common import OverwriteOption, _fail, _refuse_api_key, app, console
from ftrl.cli_config import ConfigArgs, config_options
from ftrl.eval.benchmarks import BenchConfig, BenchName
from ftrl.jsonl import DataError
from ftrl.provenance import claim_output


@app.command()
@config_options(BenchConfig, required=("model", "out"), omit=("envs",))
def bench(
    name: BenchName = typer.Argument(..., help="The benchmark (docs/benchmarks.md)."),
    overwrite: OverwriteOption = False,
    *,
    config_args: ConfigArgs,
) -> None:
    """Run an external benchmark resumably and print its summary table."""
    from pathlib import Path

    from rich.markdown import Markdown

    from ftrl.cli.common import _local
    from ftrl.eval.benchmarks import run_benchmark

    config = config_args.load(BenchConfig())
    _refuse_api_key(config.server.api_key)
    if config.data is not None and not Path(config.data).exists():
        raise _fail(f"{config.data}: no such file or folder")
    settings = {"benchmark": name, **config.results_settings()}
    try:
        claim = claim_output(
            config.out,
            f"bench {name}",
            {"data": config.data},
            settings,
            folder=True,
            overwrite=overwrite,
            reads=_local(config.model, config.base_model),
        )
        with claim:
            run_benchmark(name, config)
    except (ValueError, RuntimeError, DataError) as error:
        raise _fail(str(error)) from None
    console.print(Markdown((config.out_dir / "summary.md").read_text(encoding="utf-8")))
