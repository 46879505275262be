"""The local path on a CUDA GPU against the CPU, with the embedded model (run by `benchmarks/gpu_check.sh`).

On CUDA (bf16 generation, fp32 training weights): the evaluation of the demo's 48 held-out test environments
(the demo's settings: 96 tokens a turn, 8 turns, all 48 episodes in flight) and 2 GRPO steps of the `cpu`
preset on oracle-collected states of the demo's training environments. On the CPU (fp32) the same work, cut to
`--cpu-envs` environments and 1 step so the whole check stays under 8 minutes. Prints and writes
`OUT/gpu_check.json` / `.md`: seconds and generated tokens per second of each, and the GPU's speed-up.
Not a `bench_*.py`: `run_all.py` runs on machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch


def build(out: Path) -> tuple[Path, Path]:
    """The demo's environments (same recipe and seeds), and states from replaying gold trajectories on a few
    training environments (no model needed)."""
    from ftrl.env import read_envs, write_envs
    from ftrl.recipes.demo import Demo, DemoConfig
    from ftrl.rollout.collect import collect

    demo = Demo(DemoConfig(out=str(out / "demo")))
    if not demo.test_file.exists():
        demo.build()
    subset, states = out / "rl_envs.jsonl", out / "states.jsonl"
    if not states.exists():
        write_envs(subset, read_envs(demo.train_file)[:8])
        collect("oracle", subset, states, max_turns=8)
    return demo.test_file, states


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_eval(device: str, envs: Path, out: Path, limit: int | None) -> dict[str, Any]:
    """The demo's evaluation of the embedded model; generated tokens per second of wall time (tools included)."""
    from ftrl.eval.run import evaluate
    from ftrl.rollout import PolicySpec, load_policy
    from ftrl.settings import SamplingConfig

    shutil.rmtree(out, ignore_errors=True)  # evaluations resume: start from nothing
    spec = PolicySpec(model="embedded", sampling=SamplingConfig(max_new_tokens=96), batch_size=48, device=device)
    policy = load_policy(spec)
    sync(device)
    started = time.perf_counter()
    summary = evaluate(spec, envs, out, limit=limit, max_turns=8, policy=policy)
    sync(device)
    seconds = time.perf_counter() - started
    episodes = len((out / "episodes.jsonl").read_text().splitlines())
    tokens = policy.stats.completion_tokens
    return {
        "device": device,
        "dtype": str(policy.model.dtype).removeprefix("torch."),
        "episodes": episodes,
        "seconds": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "prompt_tokens": policy.stats.prompt_tokens,
        "solve_f1": summary["solve_f1"],
    }


def timed_train(device: str, states: Path, out: Path, steps: int) -> dict[str, Any]:
    """GRPO steps of the `cpu` preset (2 states x 8 responses of up to 96 tokens a step), the demo's lr."""
    from ftrl.train.config import make_config
    from ftrl.train.trainer import train

    shutil.rmtree(out, ignore_errors=True)  # training resumes from checkpoints: start from nothing
    config = make_config(
        "cpu",
        model="embedded",
        data=str(states),
        out=str(out),
        steps=steps,
        lr=5e-6,
        max_new_tokens=96,
        max_prompt_tokens=4096,
        save_every=1000,
        device=device,
    )
    sync(device)
    started = time.perf_counter()
    train(config)
    sync(device)
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = sum(row["response_len"] * config.n * config.batch_states for row in rows)
    step_seconds = sum(row["seconds"] for row in rows)
    return {
        "device": device,
        "steps": len(rows),
        "seconds": round(seconds, 1),
        "step_seconds": round(step_seconds, 1),
        "tokens": int(tokens),
        "tokens_per_s": round(tokens / step_seconds, 1),
        "reward_mean": [round(row["reward_mean"], 3) for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--cpu-envs", type=int, default=12, help="test environments evaluated on the CPU")
    parser.add_argument("--gpu-steps", type=int, default=2)
    parser.add_argument("--cpu-steps", type=int, default=1)
    parser.add_argument("--devices", default="cuda,cpu", help="'cpu' alone: a dry run of the script on any machine")
    args = parser.parse_args()
    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit(f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda})")
    args.out.mkdir(parents=True, exist_ok=True)
    envs, states = build(args.out)
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if "cuda" in devices else None,
    }
    for device in devices:
        limit = None if device == "cuda" else args.cpu_envs
        steps = args.gpu_steps if device == "cuda" else args.cpu_steps
        results[f"eval_{device}"] = timed_eval(device, envs, args.out / f"eval_{device}", limit)
        results[f"train_{device}"] = timed_train(device, states, args.out / f"train_{device}", steps)
    if {"cuda", "cpu"} <= set(devices):
        for kind in ("eval", "train"):
            results[f"{kind}_speedup"] = round(
                results[f"{kind}_cuda"]["tokens_per_s"] / results[f"{kind}_cpu"]["tokens_per_s"], 1
            )
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    lines = ["| run | device | dtype | work | seconds | generated tokens/s |", "|---|---|---|---|---:|---:|"]
    for device in devices:
        ev, tr = results[f"eval_{device}"], results[f"train_{device}"]
        lines.append(
            f"| eval | {device} | {ev['dtype']} | {ev['episodes']} episodes | {ev['seconds']} | {ev['tokens_per_s']} |"
        )
        lines.append(
            f"| GRPO | {device} | float32 | {tr['steps']} steps | {tr['step_seconds']} | {tr['tokens_per_s']} |"
        )
    text = "\n".join(lines) + "\n"
    if "eval_speedup" in results:
        text += f"\nGPU vs CPU, generated tokens/s: eval {results['eval_speedup']}x, GRPO {results['train_speedup']}x\n"
    (args.out / "gpu_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
