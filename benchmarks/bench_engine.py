"""Generation engines on the demo's two generating workloads: kvgen fp32 (the baseline) against kvgen over int8
per-channel weights (`--engine int8`, `ftrl.rollout.quant`), same model, same machine, one run.

- evaluation: the demo's 48 held-out environments, greedy, 96 new tokens a turn, up to 8 turns, 48 in flight;
- one RL step's sampling: 8 states x 8 responses, temperature 1.0, 96 new tokens (`ftrl.train.actor.sample`).

Prefill and decode tokens/s are timed separately on the step's prompts (one prefill-only forward of the 8 prompts
packed, then the decode of 64 rows over a prefilled cache); wall time and peak RSS per engine. Each engine runs in
its own process so peak memory is its own; the two processes run at the same time, so on a shared CPU both see
the same contention (the faster one then finishes first, which favours the baseline). Each writes its results as
they come to `<out>/<engine>.jsonl` (the step first, then the evaluation). Also prints the per-episode agreement
of the two evaluations and the paired bootstrap interval of their Solve-F1 difference (`ftrl.eval.paired`).

    python benchmarks/bench_engine.py [--model runs/demo/sft/model] [--envs runs/demo/envs/test.jsonl] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINES = ("kvgen", "int8")


def measure(model: str, envs: str, engine: str, threads: int, out: Path) -> dict:
    """Both workloads on one engine (run in a child process)."""
    import torch

    torch.set_num_threads(threads)
    from ftrl.env import read_envs
    from ftrl.eval.run import evaluate
    from ftrl.rollout.kvgen import generate_batch
    from ftrl.rollout.load import PolicySpec, load_policy
    from ftrl.settings import SamplingConfig
    from ftrl.train.actor import end_of_turn_ids

    spec = PolicySpec(model=model, sampling=SamplingConfig(max_new_tokens=96), batch_size=48, engine=engine)
    selected = read_envs(envs)
    started = time.perf_counter()
    policy = load_policy(spec, selected)
    load_s = time.perf_counter() - started
    decoder, tokenizer = policy.decoder_model, policy.tokenizer  # type: ignore[attr-defined]
    prompts = [policy._tokens(env.messages, env.tools) for env in selected[:8]]  # type: ignore[attr-defined]
    stop = set(end_of_turn_ids(policy.model, tokenizer))  # type: ignore[attr-defined]
    # prefill alone: one token each (the forward that admits the prompts, then the first sample)
    started = time.perf_counter()
    generate_batch(decoder, prompts, stop, SamplingConfig(temperature=1.0, max_new_tokens=1), max_rows=64)
    prefill_s = time.perf_counter() - started
    torch.manual_seed(0)
    rows = [p for p in prompts for _ in range(8)]
    started = time.perf_counter()
    outputs = generate_batch(decoder, rows, stop, SamplingConfig(temperature=1.0, max_new_tokens=96), max_rows=64)
    step_s = time.perf_counter() - started
    new_tokens = sum(len(o) for o in outputs)
    step = {
        "engine": engine,
        "load_s": load_s,
        "step_sampling_s": step_s,
        "step_new_tokens": new_tokens,
        "prefill_tok_s": sum(len(p) for p in prompts) / prefill_s,
        "decode_tok_s": new_tokens / max(step_s - prefill_s, 1e-9),
        "load_average": os.getloadavg()[0],
    }
    with open(out.with_suffix(".jsonl"), "a", encoding="utf-8") as log:
        log.write(json.dumps(step) + "\n")
    policy.stats.prompt_tokens = policy.stats.completion_tokens = 0
    started = time.perf_counter()
    summary = evaluate(spec, envs, out / "eval", max_turns=8, policy=policy)
    result = step | {
        "eval_s": time.perf_counter() - started,
        "eval_f1": summary["mean"]["solve_f1"],
        "eval_prompt_tokens": policy.stats.prompt_tokens,
        "eval_new_tokens": policy.stats.completion_tokens,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_average": os.getloadavg()[0],
    }
    with open(out.with_suffix(".jsonl"), "a", encoding="utf-8") as log:
        log.write(json.dumps(result) + "\n")
    return result


def agreement(folders: list[Path]) -> tuple[float, int]:
    """Share of episodes whose messages are identical under both engines, and the episode count."""
    rows = []
    for folder in folders:
        with open(folder / "eval" / "episodes.jsonl", encoding="utf-8") as handle:
            rows.append({row["episode_id"]: row["messages"] for row in map(json.loads, handle)})
    same = sum(rows[0][key] == rows[1].get(key) for key in rows[0])
    return same / len(rows[0]), len(rows[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/sft/model")
    parser.add_argument("--envs", default="runs/demo/envs/test.jsonl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.envs, args.child, args.threads, Path(args.out))))
        return
    root = Path(tempfile.mkdtemp())
    print(f"results as they come: {root}/<engine>.jsonl", flush=True)
    load = [os.getloadavg()[0]]
    children = []
    for engine in ENGINES:
        command = [sys.executable, __file__, "--model", args.model, "--envs", args.envs]
        command += ["--threads", str(args.threads), "--child", engine, "--out", str(root / engine)]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    results = []
    for child in children:
        stdout, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"a benchmark process failed ({child.args})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
        load.append(os.getloadavg()[0])
    same, episodes = agreement([root / engine for engine in ENGINES])
    base = results[0]
    print(f"{args.model} on {args.envs}; threads {args.threads}; load average at start/at each end: {load}")
    print("| engine | eval wall s | eval F1 | step sampling s | prefill tok/s | decode tok/s | peak RSS MB | load s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['engine']} | {row['eval_s']:.1f} ({base['eval_s'] / row['eval_s']:.2f}x) | "
            f"{row['eval_f1']:.1f} | {row['step_sampling_s']:.1f} "
            f"({base['step_sampling_s'] / row['step_sampling_s']:.2f}x) | {row['prefill_tok_s']:.0f} | "
            f"{row['decode_tok_s']:.0f} | {row['peak_rss_mb']:.0f} | {row['load_s']:.1f} |"
        )
    print(f"identical episodes (all messages): {same:.0%} of {episodes}")
    from ftrl.eval.paired import difference_rows, pairwise

    for row in difference_rows(pairwise({engine: root / engine / "eval" for engine in ENGINES})):
        print(" | ".join(row))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
