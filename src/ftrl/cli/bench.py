"""`ftrl bench`: external benchmarks scored the paper's way."""

from __future__ import annotations

from pathlib import Path

import typer

from ftrl.cli.common import (
    BaseUrlOption,
    EnableThinkingOption,
    MaxNewTokensOption,
    OverwriteOption,
    _fail,
    _local,
    _server_config,
    app,
    console,
)
from ftrl.jsonl import DataError
from ftrl.provenance import claim_output, describe_model


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
