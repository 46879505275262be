"""External benchmarks of the paper (ToolHop, tau-bench, RoTBench) and general-capability checks, by name.

`run_benchmark(name, options)` is what `ftrl bench NAME` calls: it loads the data, builds the agent (the model
under test, or the gold/oracle agent when the model is `gold`), runs resumably into `options.out_dir` and
returns the summary. See docs/benchmarks.md for the rules behind every score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from ftrl.rollout.load import PolicySpec, load_policy
from ftrl.rollout.policy import Policy
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import SamplingConfig, ServerConfig

GOLD = "gold"


@dataclass(kw_only=True)
class BenchOptions:
    """Everything a benchmark run may need; each benchmark reads the fields it uses."""

    model: str
    out_dir: Path
    #: The server of `model`; None: a local model (folder or `embedded`), or `gold`.
    server: ServerConfig | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    data: Path | None = None
    limit: int | None = None
    trials: int = 1
    #: tau-bench's simulated user: its model, and the server of that model (None: a local model).
    user_model: str | None = None
    user_server: ServerConfig | None = None
    base_model: str | None = None
    rule: str = "ftrl"
    #: Items answered together: one batched generate (local model) or concurrent requests (server).
    batch_size: int = 8
    workers: int = 0
    #: Agent replies per item; None keeps each benchmark's protocol (ToolHop 9, tau-bench 30).
    max_turns: int | None = None


def _require_data(options: BenchOptions, name: str) -> Path:
    if options.data is None:
        raise ValueError(f"{name} needs --data (see docs/benchmarks.md for where to get it)")
    return options.data


def _runtime(options: BenchOptions) -> ToolRuntime:
    return ToolRuntime(RuntimeConfig(workers=options.workers))


def _model(options: BenchOptions) -> Policy:
    """The model under test, through `ftrl.rollout.load_policy`."""
    spec = PolicySpec(
        model=options.model, server=options.server, sampling=options.sampling, batch_size=options.batch_size
    )
    return load_policy(spec)


class MultiTurn(TypedDict, total=False):
    """Keyword arguments of the multi-turn runners: conversations in flight, agent replies per item."""

    in_flight: int
    max_turns: int


def _multi_turn(options: BenchOptions) -> MultiTurn:
    """Multi-turn settings: conversations in flight, and agent replies per item when overridden."""
    turns = MultiTurn(in_flight=options.batch_size)
    if options.max_turns is not None:
        turns["max_turns"] = options.max_turns
    return turns


def run_toolhop_bench(options: BenchOptions) -> dict[str, Any]:
    from ftrl.eval.benchmarks.toolhop import ToolHopOracle, load_toolhop, run_toolhop

    items = load_toolhop(_require_data(options, "toolhop"), options.limit)
    with _runtime(options) as runtime:
        agent = ToolHopOracle.for_item if options.model == GOLD else _model(options)
        return run_toolhop(items, agent, options.out_dir, runtime, **_multi_turn(options))


def run_taubench_bench(options: BenchOptions) -> dict[str, Any]:
    from ftrl.eval.benchmarks.taubench import GoldAgent, ScriptedUser, load_taubench, run_taubench

    source, tasks = load_taubench(_require_data(options, "taubench"), options.limit)
    if options.user_model:
        user = load_policy(
            PolicySpec(
                model=options.user_model,
                server=options.user_server,
                sampling=replace(options.sampling, enable_thinking=False),
                batch_size=options.batch_size,
            )
        )
    elif options.model == GOLD:
        user = ScriptedUser()
    else:
        raise ValueError("taubench needs --user-model (the simulated user; the paper uses gpt-4o via --user-base-url)")
    with _runtime(options) as runtime:
        agent = GoldAgent.for_task if options.model == GOLD else _model(options)
        return run_taubench(
            source, tasks, agent, user, options.out_dir, runtime, trials=options.trials, **_multi_turn(options)
        )


def run_rotbench_bench(options: BenchOptions) -> dict[str, Any]:
    from ftrl.eval.benchmarks.rotbench import gold_policy, load_rotbench, run_rotbench

    items = load_rotbench(_require_data(options, "rotbench"), limit=options.limit)
    policy = gold_policy(items) if options.model == GOLD else _model(options)
    return run_rotbench(items, policy, options.out_dir, rule=options.rule, batch_size=options.batch_size)


def _general(task: str) -> Callable[[BenchOptions], dict[str, Any]]:
    def run(options: BenchOptions) -> dict[str, Any]:
        from ftrl.eval.benchmarks.general import TASKS, gold_policy, load_rows, run_general

        rows = load_rows(_require_data(options, task), TASKS[task], options.limit)
        policy = gold_policy(task, rows) if options.model == GOLD else _model(options)
        if not TASKS[task].needs_runtime:
            return run_general(task, rows, policy, options.out_dir, batch_size=options.batch_size)
        with _runtime(options) as runtime:
            return run_general(task, rows, policy, options.out_dir, runtime, batch_size=options.batch_size)

    return run


def run_drift_bench(options: BenchOptions) -> dict[str, Any]:
    from ftrl.eval.benchmarks.general import run_drift

    if not options.base_model:
        raise ValueError("drift needs --base-model (the model before training)")
    return run_drift(options.model, options.base_model, options.out_dir)


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    run: Callable[[BenchOptions], dict[str, Any]]


BENCHMARKS: dict[str, Benchmark] = {
    bench.name: bench
    for bench in (
        Benchmark("toolhop", "multi-hop tool use: Direct / Mandatory / Free answer correctness", run_toolhop_bench),
        Benchmark("taubench", "stateful customer-service agent with a simulated user: pass^k", run_taubench_bench),
        Benchmark("rotbench", "tool calling under noisy tool docs: TS / PI / CF per noise level", run_rotbench_bench),
        *[
            Benchmark(task, f"general capability: {task}", _general(task))
            for task in ("mmlu", "bbh", "gsm8k", "math", "humaneval", "mbpp")
        ],
        Benchmark("drift", "perplexity and KL(tuned||base) on a bundled text sample", run_drift_bench),
    )
}


def run_benchmark(name: str, options: BenchOptions) -> dict[str, Any]:
    """Run benchmark `name` (see `BENCHMARKS`) with `options`; returns its summary."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name].run(options)


__all__ = ["BENCHMARKS", "GOLD", "BenchOptions", "Benchmark", "run_benchmark"]
