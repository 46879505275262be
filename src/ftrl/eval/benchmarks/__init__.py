"""External benchmarks of the paper (ToolHop, tau-bench, RoTBench) and general-capability checks, by name.

`run_benchmark(name, options)` is what `ftrl bench NAME` calls: it loads the data, builds the agent (the model
under test, or the gold/oracle agent when the model is `gold`), runs resumably into `options.out_dir` and
returns the summary. See docs/benchmarks.md for the rules behind every score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

from ftrl.provenance import describe_model
from ftrl.rollout.load import PolicyOptions, PolicySpec, load_policy
from ftrl.rollout.policy import Policy
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import ServerConfig, setting

GOLD = "gold"


#: The benchmarks `ftrl bench NAME` runs.
BenchName = Literal["toolhop", "taubench", "rotbench", "mmlu", "bbh", "gsm8k", "math", "humaneval", "mbpp", "drift"]


@dataclass(kw_only=True)
class BenchConfig(PolicyOptions):
    """`ftrl bench`: the policy options of `ftrl eval` (the model under test runs as it would there), plus each
    benchmark's own; each benchmark reads the fields it uses. Flags, `--config` keys and the resume identity derive
    from these fields."""

    model: str = setting(
        "", "Model folder, 'embedded', a served model name (with --base-url), or 'gold' (the gold/oracle agent)."
    )
    out: str = setting("", "Output folder: results.jsonl, summary.json, summary.md (resumable).", results=False)
    data: str | None = setting(None, "Benchmark data file or folder (docs/benchmarks.md).", results=False)
    limit: int | None = setting(None, "Only the first K items (per level for rotbench).", min=1, results=False)
    max_turns: int = setting(
        0,
        "toolhop, taubench: agent replies per item (0: the benchmark's protocol, 9 and 30; fewer deviates from it).",
        min=0,
    )
    batch_size: int = setting(8, "Items answered together (multi-turn items play in step).", min=1, results=False)
    trials: int = setting(1, "taubench: trials per task (pass^1..pass^k).", min=1)
    user_model: str | None = setting(None, "taubench: the simulated user's model.")
    user_base_url: str | None = setting(None, "taubench: server for --user-model (default --base-url).")
    base_model: str | None = setting(None, "drift: the model before training.")
    rule: Literal["ftrl", "rotbench"] = setting(
        "ftrl", "rotbench: matching rule, 'ftrl' (paper) or 'rotbench' (original)."
    )
    workers: int = setting(0, "Runtime worker processes for tool calls (0: the runtime's default).", results=False)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def user_server(self) -> ServerConfig | None:
        """The simulated user's server: --user-base-url, else the model's server, with the same key."""
        user = replace(self.server, base_url=self.user_base_url or self.server.base_url)
        return user.config(self.user_model, concurrency=self.batch_size)

    def results_settings(self) -> dict[str, Any]:
        """As `PolicyOptions`, with the models before training and of the user by content."""
        settings = super().results_settings()
        settings["base_model"] = describe_model(self.base_model) if self.base_model else None
        return settings


def _require_data(options: BenchConfig, name: str) -> Path:
    if options.data is None:
        raise ValueError(f"{name} needs --data (see docs/benchmarks.md for where to get it)")
    return Path(options.data)


def _runtime(options: BenchConfig) -> ToolRuntime:
    return ToolRuntime(RuntimeConfig(workers=options.workers))


def _model(options: BenchConfig) -> Policy:
    """The model under test, through `ftrl.rollout.load_policy`, as `ftrl eval` would run it."""
    return load_policy(options.spec())


class MultiTurn(TypedDict, total=False):
    """Keyword arguments of the multi-turn runners: conversations in flight, agent replies per item."""

    in_flight: int
    max_turns: int


def _multi_turn(options: BenchConfig) -> MultiTurn:
    """Multi-turn settings: conversations in flight, and agent replies per item when overridden."""
    turns = MultiTurn(in_flight=options.batch_size)
    if options.max_turns:
        turns["max_turns"] = options.max_turns
    return turns


def run_toolhop_bench(options: BenchConfig) -> dict[str, Any]:
    from ftrl.eval.benchmarks.toolhop import ToolHopOracle, load_toolhop, run_toolhop

    items = load_toolhop(_require_data(options, "toolhop"), options.limit)
    with _runtime(options) as runtime:
        agent = ToolHopOracle.for_item if options.model == GOLD else _model(options)
        return run_toolhop(items, agent, options.out_dir, runtime, **_multi_turn(options))


def run_taubench_bench(options: BenchConfig) -> dict[str, Any]:
    from ftrl.eval.benchmarks.taubench import GoldAgent, ScriptedUser, load_taubench, run_taubench

    source, tasks = load_taubench(_require_data(options, "taubench"), options.limit)
    if options.user_model:
        user = load_policy(
            PolicySpec(
                model=options.user_model,
                server=options.user_server,
                sampling=replace(options.spec().sampling, enable_thinking=False),
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


def run_rotbench_bench(options: BenchConfig) -> dict[str, Any]:
    from ftrl.eval.benchmarks.rotbench import gold_policy, load_rotbench, run_rotbench

    items = load_rotbench(_require_data(options, "rotbench"), limit=options.limit)
    policy = gold_policy(items) if options.model == GOLD else _model(options)
    return run_rotbench(items, policy, options.out_dir, rule=options.rule, batch_size=options.batch_size)


def _general(task: str) -> Callable[[BenchConfig], dict[str, Any]]:
    def run(options: BenchConfig) -> dict[str, Any]:
        from ftrl.eval.benchmarks.general import TASKS, gold_policy, load_rows, run_general

        rows = load_rows(_require_data(options, task), TASKS[task], options.limit)
        policy = gold_policy(task, rows) if options.model == GOLD else _model(options)
        if not TASKS[task].needs_runtime:
            return run_general(task, rows, policy, options.out_dir, batch_size=options.batch_size)
        with _runtime(options) as runtime:
            return run_general(task, rows, policy, options.out_dir, runtime, batch_size=options.batch_size)

    return run


def run_drift_bench(options: BenchConfig) -> dict[str, Any]:
    from ftrl.eval.benchmarks.general import run_drift

    if not options.base_model:
        raise ValueError("drift needs --base-model (the model before training)")
    return run_drift(options.model, options.base_model, options.out_dir)


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str
    run: Callable[[BenchConfig], dict[str, Any]]


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


def run_benchmark(name: str, options: BenchConfig) -> dict[str, Any]:
    """Run benchmark `name` (see `BENCHMARKS`) with `options`; returns its summary."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name].run(options)


__all__ = ["BENCHMARKS", "GOLD", "BenchConfig", "BenchName", "Benchmark", "run_benchmark"]
