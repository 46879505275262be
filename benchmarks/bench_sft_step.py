"""SFT step time: full fine-tuning vs a frozen bottom (`SFTConfig.freeze_layers`) vs LoRA, same trajectories.

Each variant loads the model afresh and runs `--steps` optimizer steps of `--batch` gold trajectories (the demo's
SFT step: one forward/backward per trajectory, gradients accumulated, AdamW). Variants alternate in the order
given and the first is the baseline, so the ratios come from one run on one machine state.

    python benchmarks/bench_sft_step.py [--model embedded|DIR] [--envs FILE] [--variants full,freeze10,lora]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ftrl.env import read_envs
from ftrl.models import resolve_model
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.train.actor import freeze_bottom, load_trainable_model
from ftrl.train.sft import assistant_loss, gold_trajectory, tokenize_trajectory


def step_seconds(model_path: str, variant: str, envs: list, steps: int) -> tuple[list[float], int]:
    model, tokenizer = load_trainable_model(model_path, lora=variant == "lora")
    if variant.startswith("freeze"):
        freeze_bottom(model, int(variant.removeprefix("freeze")))
    with ToolRuntime(RuntimeConfig()) as runtime:
        examples = [tokenize_trajectory(tokenizer, env, gold_trajectory(env, runtime)) for env in envs]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for ids, labels in examples:
            (assistant_loss(model, ids, labels) / len(examples)).backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times, sum(len(ids) for ids, _ in examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--envs", default="runs/demo/envs/sft.jsonl", help="procedural envs with gold calls")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", default="full,freeze10,lora")
    args = parser.parse_args()
    path = str(resolve_model(args.model))
    envs = read_envs(args.envs)[: args.batch]
    rows = [(variant, *step_seconds(path, variant, envs, args.steps)) for variant in args.variants.split(",")]
    base = statistics.median(rows[0][1])
    print(f"{len(envs)} trajectories per step, torch threads {torch.get_num_threads()}")
    print("| variant | tokens per step | step seconds (each) | median | vs first |")
    print("|---|---:|---|---:|---:|")
    for variant, times, tokens in rows:
        median = statistics.median(times)
        print(
            f"| {variant} | {tokens} | {', '.join(f'{t:.1f}' for t in times)} | {median:.1f} | {base / median:.2f}x |"
        )


if __name__ == "__main__":
    main()
