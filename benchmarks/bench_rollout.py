"""Rollout throughput: the batched engine vs the reference's one-environment-at-a-time `generate` loop.

Reference (baseline, `Code/evaluation/evaluation_self.py`): episodes one after another; every turn renders the
whole conversation and calls `model.generate` on it alone (full prompt prefill each turn, batch 1).
Ours: `run_rollouts` with `HFPolicy`: the episodes in flight decode together in packed forwards, and their
keys/values are kept between turns (`ftrl.rollout.kvgen`), so a turn only prefills the new tool results and the
samples of one environment share their prompt's prefill. Measured twice: turn by turn (every episode
waits for the batch's slowest reply before its tools run) and with continuous batching (the default: an episode
whose reply is done runs its tools and rejoins the running batch at once).

Both use the same model, prompt rendering, parser, tools and settings; the metric is generated tokens per
wall-clock second (greedy decoding gives both the same tokens up to float rounding). Torch runs with
`--threads` threads (1 by default: on a shared 2-core machine a second thread mostly spins).

    python benchmarks/bench_rollout.py [--model embedded|DIR|tiny] [--envs FILE|demo] [--limit N] [--n-per-env K]

`--envs demo` builds the demo's held-out test environments (`ftrl.demo.DemoConfig`: 2-3 small tools per
environment, short prompts) instead of reading a file; with the demo's warm-started model
(`--model runs/demo/sft/model`) episodes then run several tool-calling turns, the case the paper's collection
and evaluation spend their time on.
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
from ftrl.env.domains import load_source
from ftrl.rollout import RolloutConfig, run_rollouts
from ftrl.rollout.hf import HFConfig, HFPolicy
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import SamplingConfig

SHARED_ENVS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ftrl" / "test_sample.jsonl"


class OneAtATimePolicy(HFPolicy):
    """The reference's generation: each conversation alone through `model.generate`, no cache reuse."""

    def generate(self, conversations, tools=None):
        replies = []
        for i, messages in enumerate(conversations):
            text = self.render(messages, tools[i] if tools else None)
            inputs = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
            sampling = self.config.sampling
            sampled = sampling.temperature > 0
            output = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sampled,
                temperature=sampling.temperature if sampled else None,
                top_p=sampling.top_p if sampled else None,
                eos_token_id=sorted(self.stop_ids),
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new = output[0, inputs["input_ids"].shape[1] :].tolist()
            self.stats.completion_tokens += len(new)
            replies.append(self.format.parse(self.tokenizer.decode(new, skip_special_tokens=True)))
        self.stats.calls += 1
        return replies


def measure(policy: HFPolicy, jobs, max_turns: int, batch_size: int, continuous: bool = True) -> dict:
    start_tokens = policy.stats.completion_tokens
    began = time.perf_counter()
    with ToolRuntime(RuntimeConfig(workers=1)) as runtime:
        results = list(
            run_rollouts(
                jobs,
                policy,
                runtime,
                RolloutConfig(max_turns=max_turns, batch_size=batch_size, continuous=continuous),
            )
        )
    seconds = time.perf_counter() - began
    tokens = policy.stats.completion_tokens - start_tokens
    turns = sum(r.turns for r in results)
    return {
        "seconds": seconds,
        "tokens": tokens,
        "tok_s": tokens / seconds,
        "turns": turns,
        "calls": sum(r.n_calls for r in results),
    }


def demo_envs(n: int) -> list:
    """The first `n` environments of the demo's held-out test set, built here (procedural, seeded)."""
    from ftrl.construction.config import BuildConfig
    from ftrl.construction.driver import build_environments
    from ftrl.env import read_envs
    from ftrl.recipes.demo import DemoConfig

    demo = DemoConfig()
    path = Path(tempfile.mkdtemp()) / "test.jsonl"
    config = BuildConfig(n=n, split="test", domains=demo.held_out, seed=demo.seed + 1, difficulty=demo.difficulty)
    build_environments(config, path)
    return read_envs(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help=MODEL_HELP)
    parser.add_argument("--envs", default=str(SHARED_ENVS), help="environment file, or 'demo' (see above)")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--n-per-env", type=int, default=1)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = bench_model(args.model)
    envs = (demo_envs(args.limit) if args.envs == "demo" else load_source(args.envs).envs)[: args.limit]
    jobs = [(f"{i}-{k}", env) for i, env in enumerate(envs) for k in range(args.n_per_env)]
    config = HFConfig(
        sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature),
        max_batch=args.batch_size,
    )
    ours = HFPolicy.load(model, config)
    baseline = OneAtATimePolicy(ours.model, ours.tokenizer, config)
    rows = [
        (
            "reference: one episode at a time, HF generate per turn",
            measure(baseline, jobs, args.max_turns, 1, continuous=False),
        ),
        (
            f"ftrl, turn by turn: {args.batch_size} episodes in flight, one batched decode per turn, prefix KV cache",
            measure(ours, jobs, args.max_turns, args.batch_size, continuous=False),
        ),
        (
            "ftrl (default): the same with continuous batching (an episode's next turn joins the running batch)",
            measure(ours, jobs, args.max_turns, args.batch_size),
        ),
    ]
    base = rows[0][1]["tok_s"]
    print(
        f"model {args.model}, {len(jobs)} episodes ({args.limit} envs x {args.n_per_env}), max_turns {args.max_turns}, "
        f"max_new_tokens {args.max_new_tokens}, temperature {args.temperature}, threads {args.threads}; "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print("| approach | generated tokens | turns | seconds | tokens/s | vs reference |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows:
        print(
            f"| {name} | {row['tokens']} | {row['turns']} | {row['seconds']:.1f} | {row['tok_s']:.1f} "
            f"| {row['tok_s'] / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
