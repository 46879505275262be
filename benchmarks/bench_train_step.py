"""One RL training step with and without prompt sharing: a state's n responses in one micro-batch (they share
one prompt pass, `ftrl.train.actor.group_logprobs`) vs one response per micro-batch (each runs prompt + response).

Same model, states, seed and settings on both sides; sampling is identical, so the difference is the reference
and update passes. Needs states and a model that calls tools, e.g. the demo's (`ftrl demo` writes both).

    python benchmarks/bench_train_step.py [--model runs/demo/sft/model] \
        [--data runs/demo/rl/round_1/states.jsonl] [--threads 1]
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import torch

from _common import demo_step_args
from ftrl.train import trainer as trainer_module
from ftrl.train.config import make_config


def timed_step(model: str, data: str, micro_batch: int) -> dict[str, float]:
    config = make_config(
        "cpu",
        model=model,
        data=data,
        out=tempfile.mkdtemp(),
        steps=1,
        n=8,
        lr=5e-6,
        max_new_tokens=96,
        max_prompt_tokens=4096,
        micro_batch_size=micro_batch,
        seed=0,
    )
    torch.manual_seed(0)
    trainer = trainer_module.Trainer(config)
    runtime, bind = trainer_module.runtime_scorer(config)
    sample, spent = trainer_module.sample, {}

    def timed_sample(*args, **kwargs):
        began = time.perf_counter()
        out = sample(*args, **kwargs)
        spent["sample"] = time.perf_counter() - began
        return out

    trainer_module.sample = timed_sample
    try:
        with runtime as handle:
            began = time.perf_counter()
            metrics = trainer.train_step(bind(handle))
            total = time.perf_counter() - began
    finally:
        trainer_module.sample = sample
    return {
        "seconds": total,
        "sample": spent["sample"],
        "rest": total - spent["sample"],
        "reward": metrics["reward_mean"],
        "response_len": metrics["response_len"],
    }


def main() -> None:
    args = demo_step_args(__doc__)
    torch.set_num_threads(args.threads)
    rows = [
        ("one response per micro-batch (prompt re-run per response)", timed_step(args.model, args.data, 1)),
        ("8 per micro-batch (one prompt pass per state)", timed_step(args.model, args.data, 8)),
    ]
    base = rows[0][1]["rest"]
    print(
        f"{args.model} on {args.data}, 2 states x 8 responses, threads {args.threads}; {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print("| micro-batching | step s | sampling s | reference + update s | reference + update vs baseline | reward |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows:
        print(
            f"| {name} | {row['seconds']:.1f} | {row['sample']:.1f} | {row['rest']:.1f} | "
            f"{base / row['rest']:.1f}x | {row['reward']:.3f} |"
        )


if __name__ == "__main__":
    main()
