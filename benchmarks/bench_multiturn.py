"""Multi-turn benchmarks (tau-bench): conversations one at a time vs played together in batched rounds.

Baseline: `run_taubench` with one conversation in flight, how ftrl ran it before `play_together` (each agent or
user reply a batch-1 `generate`). Ours: the same call with `--in-flight N` conversations, whose pending agent
replies go to the model as one batched `generate` per round, and the user's replies likewise.
Same tasks, agent, simulated user, tools and settings (the model plays both the agent and the user, greedy); the
metric is generated tokens (agent + user) per wall-clock second. Torch runs with `--threads` threads.

    python benchmarks/bench_multiturn.py [--model embedded|DIR|tiny] [--limit N] [--max-turns T] [--in-flight N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from _common import MODEL_HELP, bench_model
from ftrl.eval.benchmarks.taubench import load_taubench, run_taubench
from ftrl.rollout.hf import HFConfig, HFPolicy
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import SamplingConfig

TAU_BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "tau-bench"


def measure(agent: HFPolicy, user: HFPolicy, tasks, source, max_turns: int, in_flight: int) -> dict:
    before = agent.stats.completion_tokens + user.stats.completion_tokens
    began = time.perf_counter()
    with ToolRuntime(RuntimeConfig(workers=1)) as runtime:
        summary = run_taubench(
            source, tasks, agent, user, tempfile.mkdtemp(), runtime, max_turns=max_turns, in_flight=in_flight
        )
    seconds = time.perf_counter() - began
    tokens = agent.stats.completion_tokens + user.stats.completion_tokens - before
    return {
        "seconds": seconds,
        "tokens": tokens,
        "tok_s": tokens / seconds,
        "pass1": summary["pass_hat_k"]["1"]["overall"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help=MODEL_HELP)
    parser.add_argument("--data", default=str(TAU_BENCH), help="tau-bench folder")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = bench_model(args.model)
    source, tasks = load_taubench(args.data, args.limit)
    config = HFConfig(sampling=SamplingConfig(max_new_tokens=args.max_new_tokens), max_batch=args.in_flight)
    agent = HFPolicy.load(model, config)
    user = HFPolicy(agent.model, agent.tokenizer, config)  # same weights, its own conversation caches
    rows = [
        ("one conversation at a time (before)", measure(agent, user, tasks, source, args.max_turns, 1)),
        (
            f"{args.in_flight} in flight, batched rounds (`play_together`)",
            measure(agent, user, tasks, source, args.max_turns, args.in_flight),
        ),
    ]
    base = rows[0][1]["tok_s"]
    print(
        f"model {args.model}, {len(tasks)} tau-bench tasks, max_turns {args.max_turns}, max_new_tokens "
        f"{args.max_new_tokens}, threads {args.threads}; {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| approach | generated tokens | seconds | tokens/s | vs one at a time | pass^1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows:
        print(
            f"| {name} | {row['tokens']} | {row['seconds']:.1f} | {row['tok_s']:.1f} | {row['tok_s'] / base:.1f}x "
            f"| {row['pass1']:.1f} |"
        )


if __name__ == "__main__":
    main()
