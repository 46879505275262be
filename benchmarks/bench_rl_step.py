"""The RL step's cost: the demo's previous step against its current one, same model, states and machine.

Previous (until 2026-12-01): `cpu` preset, 2 states x 8 samples, temperature 0.7, a k3 KL to a frozen reference
model (one extra no-grad pass), every layer trained. Current (`DemoConfig`): 8 states x 8 samples drawn, the 4
whose samples scored differently trained (dynamic sampling), temperature 1.0, no reference pass, embeddings and
layers 0-9 frozen (no backward below layer 10). Reports sampled turns per second and the split of a step between
sampling, scoring (tool execution), the reference pass and the update (forward + backward + AdamW).

    python benchmarks/bench_rl_step.py [--model runs/demo/sft/model] [--data runs/demo/rl/round_1/states.jsonl]
        [--steps 2] [--threads 1]
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile

import torch

from _common import demo_step_args
from ftrl.train import trainer as trainer_module
from ftrl.train.config import make_config

PREVIOUS = {"batch_states": 2, "mini_batch_states": 2, "temperature": 0.7, "kl_coef": 0.001, "lr": 5e-6}
CURRENT = {
    "batch_states": 4,
    "mini_batch_states": 4,
    "gen_batch_states": 8,
    "filter_groups": True,
    "temperature": 1.0,
    "kl_coef": 0.0,
    "freeze_layers": 10,
    "lr": 1e-5,
}
PHASES = ("seconds_sample", "seconds_score", "seconds_reference", "seconds_update")


def run(model: str, data: str, steps: int, overrides: dict) -> dict[str, float]:
    """Median per-step numbers over `steps` steps (the first step included: nothing is cached across steps)."""
    config = make_config(
        "cpu",
        model=model,
        data=data,
        out=tempfile.mkdtemp(),
        steps=steps,
        n=8,
        max_new_tokens=96,
        max_prompt_tokens=4096,
        seed=0,
        **overrides,
    )
    torch.manual_seed(0)
    trainer = trainer_module.Trainer(config)
    runtime, bind = trainer_module.runtime_scorer(config)
    rows = []
    with runtime as handle:
        for _ in range(steps):
            rows.append(trainer.train_step(bind(handle)))
    result = {key: statistics.median(row[key] for row in rows) for key in (*PHASES, "seconds", "sampled_turns")}
    result["turns_per_s"] = sum(row["sampled_turns"] for row in rows) / sum(row["seconds"] for row in rows)
    result["reward"] = statistics.mean(row["reward_mean"] for row in rows)
    return result


def main() -> None:
    args = demo_step_args(__doc__, [("--steps", int, 2)])
    torch.set_num_threads(args.threads)
    rows = [
        ("previous: 2 states x 8, KL reference, all layers", run(args.model, args.data, args.steps, PREVIOUS)),
        (
            "current: 8 x 8 sampled, 4 informative trained, no reference, layers 0-9 frozen",
            run(args.model, args.data, args.steps, CURRENT),
        ),
    ]
    base = rows[0][1]["turns_per_s"]
    print(
        f"{args.model} on {args.data}, {args.steps} steps each, threads {args.threads}; {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print("| step | sampled turns | step s | sampling s | scoring s | reference s | update s | turns/s | vs previous |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r['sampled_turns']:.0f} | {r['seconds']:.1f} | {r['seconds_sample']:.1f} | "
            f"{r['seconds_score']:.1f} | {r['seconds_reference']:.1f} | {r['seconds_update']:.1f} | "
            f"{r['turns_per_s']:.2f} | {r['turns_per_s'] / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
